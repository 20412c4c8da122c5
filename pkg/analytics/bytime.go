package analytics

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The time-ordered copy of the comparisons. comparisons is sorted by
// (launch_id, route, envelope_id): a query for a launch's last seconds
// (the unsealed tail of a report, the partial minute at a verdict
// window's start) reads the time columns of every row of the launch,
// which grows with the launch. comparisons_by_time holds the columns the
// aggregations read, sorted by (launch_id, received_at_us), so such a
// range costs what its own rows cost. envelope_id cannot serve as the
// time key: a foreign tap may use any unique string.
//
// A materialized view fills it on every insert into comparisons. Migrate
// creates the table and the view, then copies the rows stored before the
// view existed (one INSERT … SELECT per month partition) and records that
// in schema_marks; a migration that stopped before the mark copies again.
// A pair may so be stored more than once in the copy (and a redelivered
// batch is, as in comparisons until a merge collapses it): every read of
// the copy keeps one row per envelope_id. It is partitioned by month of ts
// like comparisons and dropped by the same retention (RawTables).

// ByTimeTable is the time-ordered copy of comparisons.
const ByTimeTable = "comparisons_by_time"

// byTimeColumns are the columns copied: what the aggregations read
// (sourceColumns), the launch and inserted_at.
const byTimeColumns = "launch_id, " + sourceColumns + ", inserted_at"

const byTimeDDL = `CREATE TABLE IF NOT EXISTS %s.comparisons_by_time (
	launch_id String,
	envelope_id String,
	ts DateTime,
	received_at_us Int64,
	route String,
	method String,
	primary_status UInt16,
	shadow_status UInt16,
	primary_latency_us UInt64,
	shadow_latency_us UInt64,
	match UInt8,
	shadow_error String,
	diff_paths Array(String),
	diff_kinds Array(String),
	diff_generalized Array(String),
	diff_noise Array(UInt8),
	fingerprint String,
	has_secondary UInt8,
	secondary_latency_us UInt64,
	secondary_error String,
	inserted_at DateTime
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (launch_id, received_at_us)`

// byTimeViewDDL is the view that copies each insert. It names the target
// table (TO), so the table is an ordinary one: partitions can be dropped
// and it can be backfilled.
const byTimeViewDDL = `CREATE MATERIALIZED VIEW IF NOT EXISTS %[1]s.comparisons_by_time_mv TO %[1]s.comparisons_by_time AS
SELECT ` + byTimeColumns + ` FROM %[1]s.comparisons`

// schemaMarksDDL records one-time data migrations that are complete.
const schemaMarksDDL = `CREATE TABLE IF NOT EXISTS %s.schema_marks (
	name String,
	done_at DateTime
) ENGINE = ReplacingMergeTree(done_at)
ORDER BY name`

const byTimeMark = "comparisons_by_time backfilled"

// backfillByTime copies the comparisons stored before the view existed
// into comparisons_by_time, unless the mark says it was done. It runs
// after the view is created, so no row is missed; rows inserted between
// the two are copied twice, which readers tolerate.
func backfillByTime(ctx context.Context, conn driver.Conn, database string) error {
	var done uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+database+".schema_marks WHERE name = ?", byTimeMark).Scan(&done); err != nil {
		return fmt.Errorf("migrate clickhouse: read schema marks: %w", err)
	}
	if done > 0 {
		return nil
	}
	pt, err := partitionsOf(ctx, conn, database, "comparisons") // on a cluster, its local tables'
	if err != nil {
		return fmt.Errorf("migrate clickhouse: %w", err)
	}
	parts, err := ScanAll(ctx, conn, "partitions",
		"SELECT DISTINCT partition FROM "+pt.parts+" WHERE database = ? AND table = ? AND active ORDER BY partition",
		func(rows driver.Rows) (p string, err error) {
			err = rows.Scan(&p)
			return p, err
		}, database, pt.table)
	if err != nil {
		return fmt.Errorf("migrate clickhouse: %w", err)
	}
	for _, p := range parts {
		if !monthPartition.MatchString(p) {
			return fmt.Errorf("migrate clickhouse: comparisons partition %q is not a month", p)
		}
		q := fmt.Sprintf("INSERT INTO %[1]s.comparisons_by_time (%[2]s) SELECT %[2]s FROM %[1]s.comparisons WHERE toYYYYMM(ts) = %[3]s",
			database, byTimeColumns, p)
		if err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("migrate clickhouse: copy partition %s into comparisons_by_time: %w", p, err)
		}
	}
	return insertBatch(ctx, conn, database, "schema_marks", "name, done_at", "marks", []string{byTimeMark},
		func(name *string) (string, []any) { return *name, []any{*name, time.Now().UTC()} })
}

var monthPartition = regexp.MustCompile(`^[0-9]{6}$`)
