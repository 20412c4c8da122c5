package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/pkg/api"
)

// Audit actions: every state change of a launch writes one.
const (
	AuditCreated      = "created"
	AuditPatched      = "patched"
	AuditStepAdvanced = "step_advanced"
	AuditPaused       = "paused"
	AuditResumed      = "resumed"
	AuditPromoted     = "promoted"
	AuditLiveStep     = "live_step"
	AuditRolledBack   = "rolled_back"
	// AuditGateFailed records that a gate failed while auto_rollback was
	// off: the launch stays where it is, waiting for a person.
	AuditGateFailed = "gate_failed"
)

// auditDDL is the audit log: one row per state change of a launch, by the
// API or the reporter's controller. A plain MergeTree: rows are never
// replaced (two changes in one microsecond are two rows). Documented in
// docs/clickhouse.md.
const auditDDL = `CREATE TABLE IF NOT EXISTS %s.audit (
	launch_id String,
	ts DateTime,
	ts_us Int64,
	action String,
	from_status String,
	to_status String,
	sample_percent Float64,
	live_percent Float64,
	actor String,
	reason String,
	details String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (launch_id, ts_us)`

const auditColumns = `launch_id, ts, ts_us, action, from_status, to_status, sample_percent, live_percent, actor, reason, details`

// InsertAudit writes entries in one batch (the INSERT names its columns, as
// 18.16 requires).
func InsertAudit(ctx context.Context, conn driver.Conn, database string, entries []api.AuditEntry) error {
	return insertBatch(ctx, conn, database, "audit", auditColumns, "audit entries", entries,
		func(e *api.AuditEntry) (string, []any) {
			return e.LaunchID, []any{e.LaunchID, e.TS.UTC(), e.TS.UnixMicro(), e.Action, e.FromStatus, e.ToStatus,
				e.SamplePercent, e.LivePercent, e.Actor, e.Reason, e.Details}
		})
}

// ReadAudit returns a launch's latest audit entries, newest first, at most
// limit.
func ReadAudit(ctx context.Context, conn driver.Conn, database, launchID string, limit int) ([]api.AuditEntry, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT launch_id, ts_us, action, from_status, to_status, sample_percent, live_percent, actor, reason, details"+
		" FROM %s.audit WHERE launch_id = @launch ORDER BY ts_us DESC LIMIT %d", database, limit), clickhouse.Named("launch", launchID))
	if err != nil {
		return nil, fmt.Errorf("audit query: %w", err)
	}
	defer rows.Close()
	out := []api.AuditEntry{}
	for rows.Next() {
		var e api.AuditEntry
		var us int64
		if err := rows.Scan(&e.LaunchID, &us, &e.Action, &e.FromStatus, &e.ToStatus, &e.SamplePercent, &e.LivePercent,
			&e.Actor, &e.Reason, &e.Details); err != nil {
			return nil, fmt.Errorf("audit query: %w", err)
		}
		e.TS = time.UnixMicro(us).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit query: %w", err)
	}
	return out, nil
}
