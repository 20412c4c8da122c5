package analytics

import (
	"fmt"
	"testing"
	"time"
)

// TestMigrateAndInsert runs against a real clickhouse-server: the schema
// applies twice (idempotent), named-column batches insert, and a pair stored
// twice reads back once with FINAL.
func TestMigrateAndInsert(t *testing.T) {
	ctx, conn := openTestDB(t, "dl_test", 2)
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

// A table created by the first schema version gains the added columns, and
// several processes migrating at once all succeed.
func TestMigrateAddsColumns(t *testing.T) {
	ctx, conn := openTestDB(t, "old", 0)
	for _, s := range []string{"CREATE DATABASE old", fmt.Sprintf(comparisonsDDL, "old")} {
		if err := conn.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- Migrate(ctx, conn, "old") }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	row := Row{LaunchID: "l", EnvelopeID: "e", TS: time.Now(), Route: "/r", DiffPaths: []string{"$.a", "$.b"},
		DiffKinds: []string{"value_changed", "extra_field"}, DiffGeneralized: []string{"$.a", "$.b"}, DiffNoise: []bool{true, false},
		Fingerprint: "abc", HasSecondary: true, SecondaryStatus: 200, BodyFormat: "json", RulesRevision: 7}
	if err := Insert(ctx, conn, "old", []Row{row}); err != nil {
		t.Fatal(err)
	}
	var noise []uint8
	var fp, format string
	var rev uint64
	if err := conn.QueryRow(ctx, "SELECT diff_noise, fingerprint, body_format, rules_revision FROM old.comparisons").Scan(&noise, &fp, &format, &rev); err != nil {
		t.Fatal(err)
	}
	if len(noise) != 2 || noise[0] != 1 || noise[1] != 0 || fp != "abc" || format != "json" || rev != 7 {
		t.Fatalf("read back noise=%v fingerprint=%q format=%q revision=%d", noise, fp, format, rev)
	}
	ex := Example{LaunchID: "l", Fingerprint: "abc", EnvelopeID: "e", TS: time.Now(), Route: "/r", PrimaryBody: `{"a":1}`}
	for slot := range uint8(ExampleSlots + 2) { // more examples than slots
		ex.Slot = slot % ExampleSlots
		if err := InsertExamples(ctx, conn, "old", []Example{ex}); err != nil {
			t.Fatal(err)
		}
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM old.examples FINAL WHERE fingerprint = 'abc'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != ExampleSlots {
		t.Fatalf("%d examples kept for one class, want %d", n, ExampleSlots)
	}
}

// TestByTimeCopy: a database whose comparisons predate the time-ordered
// copy gets its rows copied once by Migrate (not again by the next
// migration), and every later insert reaches the copy through the view.
func TestByTimeCopy(t *testing.T) {
	ctx, conn := openTestDB(t, "bt", 0)
	for _, s := range []string{"CREATE DATABASE bt", fmt.Sprintf(comparisonsDDL, "bt")} {
		if err := conn.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := addColumns(ctx, conn, nil, "bt", "comparisons", comparisonsAdded); err != nil {
		t.Fatal(err)
	}
	before := synthRows("l", time.Date(2026, 10, 31, 23, 58, 0, 0, time.UTC), 300, 4, 5) // two months
	if err := Insert(ctx, conn, "bt", before); err != nil {
		t.Fatal(err)
	}
	count := func() (n uint64, distinct uint64) {
		t.Helper()
		if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(envelope_id) FROM bt.comparisons_by_time WHERE launch_id = 'l'").Scan(&n, &distinct); err != nil {
			t.Fatal(err)
		}
		return n, distinct
	}
	for range 2 {
		if err := Migrate(ctx, conn, "bt"); err != nil {
			t.Fatal(err)
		}
		if n, d := count(); n != 300 || d != 300 {
			t.Fatalf("after migrating: %d rows, %d pairs in the copy, want 300, 300", n, d)
		}
	}
	after := synthRows("l", time.Date(2026, 11, 1, 0, 5, 0, 0, time.UTC), 100, 2, 6)
	for i := range after {
		after[i].EnvelopeID += "-after"
		after[i].SecondaryLatencyUS = 1234
	}
	if err := Insert(ctx, conn, "bt", after); err != nil {
		t.Fatal(err)
	}
	if n, d := count(); n != 400 || d != 400 {
		t.Fatalf("after an insert: %d rows, %d pairs in the copy, want 400, 400", n, d)
	}
	var sec uint64
	var ts time.Time
	if err := conn.QueryRow(ctx, "SELECT sum(secondary_latency_us), max(ts) FROM bt.comparisons_by_time WHERE envelope_id LIKE '%-after'").Scan(&sec, &ts); err != nil {
		t.Fatal(err)
	}
	if sec != 100*1234 || ts.Before(after[0].TS.Truncate(time.Hour)) {
		t.Fatalf("the copy holds secondary latencies %d (want %d), last ts %v", sec, 100*1234, ts)
	}
}
