package analytics

import (
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// TestMigrateAndInsert runs against a real clickhouse-server: the schema
// applies twice (idempotent), named-column batches insert, and a pair stored
// twice reads back once with FINAL.
func TestMigrateAndInsert(t *testing.T) {
	ctx := testenv.Context(t)
	conn, err := Open(ctx, Options{Addr: testenv.StartClickHouse(t), Database: "dl_test", User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 2 {
		if err := Migrate(ctx, conn, "dl_test"); err != nil {
			t.Fatal(err)
		}
	}
	ts := time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC)
	row := Row{LaunchID: "l1", EnvelopeID: "e1", TS: ts, Method: "GET", Route: "/users/{id}", Path: "/users/7",
		PrimaryStatus: 200, ShadowStatus: 200, PrimaryLatencyUS: 1500, ShadowLatencyUS: 4500,
		DiffPaths: []string{"$.name"}, DiffKinds: []string{"value_changed"}}
	other := row
	other.EnvelopeID = "e2"
	other.Match = true
	other.DiffPaths, other.DiffKinds = nil, nil
	if err := Insert(ctx, conn, "dl_test", []Row{row, other}); err != nil {
		t.Fatal(err)
	}
	if err := Insert(ctx, conn, "dl_test", []Row{row}); err != nil { // a redelivery
		t.Fatal(err)
	}
	var n, matches uint64
	var us int64
	if err := conn.QueryRow(ctx, "SELECT count(), sum(match), max(received_at_us) FROM dl_test.comparisons FINAL WHERE launch_id = 'l1'").Scan(&n, &matches, &us); err != nil {
		t.Fatal(err)
	}
	if n != 2 || matches != 1 || us != ts.UnixMicro() {
		t.Fatalf("got count=%d matches=%d received_at_us=%d, want 2, 1, %d", n, matches, us, ts.UnixMicro())
	}
	var paths []string
	if err := conn.QueryRow(ctx, "SELECT diff_paths FROM dl_test.comparisons FINAL WHERE envelope_id = 'e1'").Scan(&paths); err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || paths[0] != "$.name" {
		t.Fatalf("diff_paths = %v", paths)
	}
}
