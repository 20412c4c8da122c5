package reporter_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// TestStatsOnCluster: on the cluster form of the schema (CLICKHOUSE_CLUSTER;
// ZooKeeper and three ClickHouse 18.16 servers, two shards), the report
// the API serves, its raw reference and a verdict window give the same
// figures as on one server, read from either shard, with examples, audit
// entries and a redelivered batch.
func TestStatsOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three ClickHouse servers")
	}
	cl := testenv.StartClickHouseCluster(t, "dl", 2, 1)
	ctx, single := openTestDB(t)
	open := func(addr string) driver.Conn {
		conn, err := analytics.Open(ctx, analytics.Options{Addr: addr, Database: testDB, User: "default"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	a, b := open(cl.Nodes[0][0].Addr()), open(cl.Nodes[1][0].Addr())
	if err := analytics.MigrateCluster(ctx, a, testDB, cl.Name); err != nil {
		t.Fatal(err)
	}

	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rows := shapedRows("l1", start, 5000, 20, 1)
	var examples []analytics.Example
	for i, r := range rows {
		if r.Fingerprint != "" && len(examples) < 6 {
			examples = append(examples, analytics.Example{LaunchID: "l1", Fingerprint: r.Fingerprint, Slot: uint8(i % 3), EnvelopeID: r.EnvelopeID,
				TS: r.TS, Route: r.Route, Method: r.Method, Path: r.Path, DiffPaths: r.DiffPaths, DiffKinds: r.DiffKinds, RequestHeaders: "{}",
				PrimaryStatus: r.PrimaryStatus, PrimaryHeaders: "{}", ShadowStatus: r.ShadowStatus, ShadowHeaders: "{}"})
		}
	}
	audit := []api.AuditEntry{{LaunchID: "l1", TS: start, Action: "create", ToStatus: "running", SamplePercent: 10, Actor: "api:test", Details: "{}"},
		{LaunchID: "l1", TS: start.Add(time.Minute), Action: "patch", FromStatus: "running", ToStatus: "running", SamplePercent: 50, Actor: "api:test", Details: "{}"}}
	for _, conn := range []driver.Conn{a, single} {
		if err := analytics.Insert(ctx, conn, testDB, append(rows, shapedRows("l2", start, 500, 20, 2)...)); err != nil {
			t.Fatal(err)
		}
		if err := analytics.InsertExamples(ctx, conn, testDB, examples); err != nil {
			t.Fatal(err)
		}
		if err := analytics.InsertAudit(ctx, conn, testDB, audit); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // a later inserted_at for the copies
	for _, conn := range []driver.Conn{b, single} {
		if err := analytics.Insert(ctx, conn, testDB, rows[1000:1700]); err != nil {
			t.Fatal(err)
		}
		if _, err := analytics.Compact(ctx, conn, testDB, "l1", start.Add(12*time.Minute+30*time.Second), 0); err != nil {
			t.Fatal(err)
		}
	}

	th := api.NoiseThresholds{MinCount: 5, MinRatio: 0.5}
	from := start.Add(9*time.Minute + 5*time.Second).UnixMicro()
	// report is what a reader computes, as JSON without its time.
	report := func(conn driver.Conn) (stats, raw, window string) {
		t.Helper()
		st, err := reporter.QueryStats(ctx, conn, testDB, "l1", th)
		if err != nil {
			t.Fatal(err)
		}
		if st.Audit, err = analytics.ReadAudit(ctx, conn, testDB, "l1", 100); err != nil {
			t.Fatal(err)
		}
		rst, err := reporter.QueryStatsRaw(ctx, conn, testDB, "l1", th)
		if err != nil {
			t.Fatal(err)
		}
		w, err := reporter.QueryWindow(ctx, conn, testDB, "l1", from, th)
		if err != nil {
			t.Fatal(err)
		}
		st.GeneratedAt, rst.GeneratedAt, w.GeneratedAt = time.Time{}, time.Time{}, time.Time{}
		return mustJSON(t, st), mustJSON(t, rst), mustJSON(t, w)
	}
	want := [3]string{}
	want[0], want[1], want[2] = report(single)
	var one api.Stats
	if err := json.Unmarshal([]byte(want[0]), &one); err != nil {
		t.Fatal(err)
	}
	if one.Totals.Compared != uint64(len(rows)) || len(one.Classes) < 3 || len(one.Audit) != 2 {
		t.Fatalf("the single server's report is not the data's: %+v, %d classes, %d audit entries", one.Totals, len(one.Classes), len(one.Audit))
	}
	for node, conn := range map[string]driver.Conn{"shard 1": a, "shard 2": b} {
		var got [3]string
		got[0], got[1], got[2] = report(conn)
		for i, what := range []string{"report", "raw report", "window"} {
			if got[i] != want[i] {
				t.Errorf("%s on the cluster, read from %s, differs from one server's:\ncluster %s\n single %s", what, node, got[i], want[i])
			}
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(fmt.Errorf("encode %T: %w", v, err))
	}
	return string(b)
}
