package api

import "testing"

func TestAuditEntryJSON(t *testing.T) {
	e := AuditEntry{LaunchID: "l", TS: t0, Action: "paused", FromStatus: "active", ToStatus: "paused", SamplePercent: 10,
		LivePercent: 0, Actor: "api:127.0.0.1:5000", Reason: "why", Details: "{}"}
	checkJSON(t, e, `{"launch_id":"l","ts":"2026-11-26T06:00:00Z","action":"paused","from_status":"active","to_status":"paused",`+
		`"sample_percent":10,"live_percent":0,"actor":"api:127.0.0.1:5000","reason":"why","details":"{}"}`)
}
