package api

import "time"

// AuditEntry is one state change of a launch in the audit log: a row of
// the audit table in ClickHouse (pkg/analytics writes and reads them) and
// an entry of the report's audit list.
type AuditEntry struct {
	LaunchID string    `json:"launch_id"`
	TS       time.Time `json:"ts"`
	Action   string    `json:"action"`
	// FromStatus and ToStatus are the launch's status before and after.
	FromStatus    string  `json:"from_status"`
	ToStatus      string  `json:"to_status"`
	SamplePercent float64 `json:"sample_percent"`
	LivePercent   float64 `json:"live_percent"`
	// Actor is who or what made the change: "api:<remote address>" or
	// "controller:<reporter id>".
	Actor  string `json:"actor"`
	Reason string `json:"reason"`
	// Details is a JSON object with what else the change concerned (the
	// patched fields, the step, the verdict's numbers).
	Details string `json:"details"`
}
