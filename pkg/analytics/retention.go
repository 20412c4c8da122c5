package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// RawTables hold comparison rows and examples; AggregateTables the sealed
// aggregates. Both are partitioned by month (toYYYYMM of ts or bucket).
var (
	RawTables       = []string{"comparisons", ByTimeTable, "examples"}
	AggregateTables = []string{"seals", "pair_counts", "diff_counts", "latency_hist", "secondary_latency_hist"}
)

// DropExpired enforces retention with partition drops (ClickHouse 18.16
// has no TTL): a month's partition of a table is dropped once the whole
// month is older than the retention, i.e. when the first instant of the
// next month is at or before now - retention. A retention of 0 keeps
// everything. It returns the partitions dropped as "table/partition".
func DropExpired(ctx context.Context, conn driver.Conn, database string, now time.Time, tables []string, retention time.Duration) ([]string, error) {
	if retention <= 0 {
		return nil, nil
	}
	cutoff := now.Add(-retention)
	var dropped []string
	for _, table := range tables {
		pt, err := partitionsOf(ctx, conn, database, table) // cluster.go
		if err != nil {
			return dropped, err
		}
		parts, err := ScanAll(ctx, conn, "partitions",
			"SELECT DISTINCT partition FROM "+pt.parts+" WHERE database = ? AND table = ? AND active",
			func(rows driver.Rows) (p string, err error) {
				err = rows.Scan(&p)
				return p, err
			}, database, pt.table)
		if err != nil {
			return dropped, err
		}
		for _, p := range parts {
			month, err := time.Parse("200601", p)
			if err != nil {
				continue // not a month partition
			}
			if month.AddDate(0, 1, 0).After(cutoff) {
				continue
			}
			if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s%s DROP PARTITION %s", database, pt.table, pt.on, p)); err != nil {
				return dropped, fmt.Errorf("drop partition %s of %s.%s: %w", p, database, table, err)
			}
			dropped = append(dropped, table+"/"+p)
		}
	}
	return dropped, nil
}
