package analytics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// The rewrite of every statement Migrate runs: the replicated engine with
// its ZooKeeper path, ON CLUSTER, the local name, and a sharding key from
// the sorting key; statements it has no form for are errors, not run on
// one server.
func TestClusterRewrite(t *testing.T) {
	sc, err := newClusterSchema("dl", "c1")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ in, want string }{
		{"CREATE DATABASE IF NOT EXISTS dl", "CREATE DATABASE IF NOT EXISTS dl ON CLUSTER c1"},
		{fmt.Sprintf(comparisonsDDL, "dl"), "CREATE TABLE IF NOT EXISTS dl.comparisons_local ON CLUSTER c1 (\n\tlaunch_id String,"},
		{fmt.Sprintf(auditDDL, "dl"), "CREATE TABLE IF NOT EXISTS dl.audit_local ON CLUSTER c1 ("},
		{fmt.Sprintf(latencyHistDDL, "dl"), "CREATE TABLE IF NOT EXISTS dl.latency_hist_local ON CLUSTER c1 ("},
		{"CREATE TABLE dl.plain (a UInt8, b Enum8('x)' = 1)) ENGINE = SummingMergeTree((a)) ORDER BY tuple()",
			"CREATE TABLE dl.plain_local ON CLUSTER c1 (a UInt8, b Enum8('x)' = 1)) ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/dl/plain', '{replica}', (a)) ORDER BY tuple()"},
		{"CREATE MATERIALIZED VIEW IF NOT EXISTS dl.per_launch TO dl.plain AS SELECT launch_id AS a FROM dl.comparisons WHERE launch_id != 'dl.plain'",
			"CREATE MATERIALIZED VIEW IF NOT EXISTS dl.per_launch ON CLUSTER c1 TO dl.plain_local AS SELECT launch_id AS a FROM dl.comparisons_local WHERE launch_id != 'dl.plain'"},
	}
	for _, c := range cases {
		out, err := sc.rewrite(c.in)
		if err != nil {
			t.Fatalf("rewrite %.40q: %v", c.in, err)
		}
		if len(out) != 1 || !strings.HasPrefix(out[0], c.want) {
			t.Errorf("rewrite %.40q\n got %q\nwant prefix %q", c.in, out, c.want)
		}
	}
	// The engines and the sharding keys.
	got, _ := sc.rewrite(fmt.Sprintf(comparisonsDDL, "dl"))
	if !strings.Contains(got[0], "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/dl/comparisons', '{replica}', inserted_at)\nPARTITION BY toYYYYMM(ts)") {
		t.Errorf("comparisons engine: %s", got[0])
	}
	got, _ = sc.rewrite(fmt.Sprintf(auditDDL, "dl"))
	if !strings.Contains(got[0], "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/dl/audit', '{replica}')\nPARTITION BY") {
		t.Errorf("audit engine: %s", got[0])
	}
	keys := map[string]string{}
	for _, d := range sc.dist {
		keys[d.name] = d.key
	}
	for table, key := range map[string]string{
		"comparisons":  "cityHash64(launch_id, route, envelope_id)",
		"audit":        "cityHash64(launch_id, ts_us)",
		"latency_hist": "cityHash64(launch_id, bucket, route, method, side, answered, bin)",
		"plain":        "rand()",
	} {
		if keys[table] != key {
			t.Errorf("sharding key of %s = %q, want %q", table, keys[table], key)
		}
	}
	for _, bad := range []string{
		"CREATE TABLE dl.m (a UInt8) ENGINE = Memory",
		"CREATE TABLE other.t (a UInt8) ENGINE = MergeTree ORDER BY a",
		"CREATE TABLE dl.t (a UInt8 ENGINE = MergeTree ORDER BY a",
		"CREATE TABLE dl.t (a UInt8) ENGINE = MergeTree PARTITION BY a",
		"CREATE MATERIALIZED VIEW dl.v TO dl.unknown AS SELECT 1",
		"CREATE MATERIALIZED VIEW dl.v ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a",
		"ALTER TABLE dl.comparisons ADD COLUMN x UInt8",
	} {
		if _, err := sc.rewrite(bad); !errors.Is(err, ErrClusterSchema) {
			t.Errorf("rewrite %q: %v, want ErrClusterSchema", bad, err)
		}
	}
	if _, err := newClusterSchema("dl", "c1; DROP"); err == nil {
		t.Error("a cluster name that is not an identifier was accepted")
	}
	var single *clusterSchema
	if out, err := single.rewrite("ALTER TABLE x"); err != nil || !slices.Equal(out, []string{"ALTER TABLE x"}) || single.local("t") != "t" || single.on() != "" {
		t.Errorf("the single-node schema changes statements: %q, %v", out, err)
	}
}

// TestClusterSchema runs the cluster form on ClickHouse 18.16 processes:
// ZooKeeper, shard s1 with two replicas and shard s2 with one. The schema
// applies from several servers (idempotent), inserts through the
// Distributed table land on both shards and replicate within s1, a
// redelivered batch collapses with FINAL across shards, the aggregates
// (compaction, then the readers the reports use) give the same figures as
// the Go reference and a single server, and retention drops partitions
// on every shard.
func TestClusterSchema(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three ClickHouse servers")
	}
	cl := testenv.StartClickHouseCluster(t, "dl", 2, 1)
	ctx := testenv.Context(t)
	open := func(addr string) driver.Conn {
		conn, err := Open(ctx, Options{Addr: addr, Database: "darklaunch", User: "default"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	a, a2, b := open(cl.Nodes[0][0].Addr()), open(cl.Nodes[0][1].Addr()), open(cl.Nodes[1][0].Addr())
	const db = "darklaunch"

	// A cluster created by the schema's first version (comparisons
	// without the added columns, behind its Distributed table) gains the
	// columns in both tables.
	first, err := newClusterSchema(db, cl.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"CREATE DATABASE IF NOT EXISTS " + db, fmt.Sprintf(comparisonsDDL, db)} {
		out, err := first.rewrite(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Exec(ctx, out[0]); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.distribute(ctx, a); err != nil {
		t.Fatal(err)
	}
	for i, conn := range []driver.Conn{a, b, a} {
		if err := MigrateCluster(ctx, conn, db, cl.Name); err != nil {
			t.Fatalf("migration %d: %v", i, err)
		}
	}

	// Every table of the single-server schema is a Distributed table over
	// a replicated local table on every server, with the same columns.
	single, err := Open(ctx, Options{Addr: testenv.StartClickHouse(t), Database: db, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	if err := Migrate(ctx, single, db); err != nil {
		t.Fatal(err)
	}
	tables := columnsOf(t, ctx, single, db)
	// A materialized view keeps its name on a cluster (it reads and
	// writes the local tables): it has no Distributed form.
	for name, engine := range enginesOf(t, ctx, single, db) {
		if engine == "MaterializedView" {
			delete(tables, name)
		}
	}
	if len(tables) < 7 {
		t.Fatalf("the single-server schema has %d tables: %v", len(tables), tables)
	}
	for node, conn := range map[string]driver.Conn{"s1r1": a, "s1r2": a2, "s2r1": b} {
		got := columnsOf(t, ctx, conn, db)
		engines := enginesOf(t, ctx, conn, db)
		for table, cols := range tables {
			if !slices.Equal(got[table], cols) || !slices.Equal(got[table+localSuffix], cols) {
				t.Errorf("%s: %s has columns %v, %s_local %v, want %v", node, table, got[table], table, got[table+localSuffix], cols)
			}
			if engines[table] != "Distributed" || !strings.HasPrefix(engines[table+localSuffix], "Replicated") {
				t.Errorf("%s: engines of %s and %s_local are %q and %q", node, table, table, engines[table], engines[table+localSuffix])
			}
		}
	}

	// The same pairs on the cluster and on one server, then a redelivery
	// of part of them.
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rows := synthRows("l1", start, 6000, 10, 1)
	other := synthRows("l2", start, 500, 10, 2)
	var again []Row
	for i := 0; i < len(rows); i += 7 {
		again = append(again, rows[i])
	}
	for _, conn := range []driver.Conn{a, single} {
		if err := Insert(ctx, conn, db, append(slices.Clone(rows), other...)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // a later inserted_at for the copies
	for _, conn := range []driver.Conn{b, single} {
		if err := Insert(ctx, conn, db, again); err != nil {
			t.Fatal(err)
		}
	}
	// Synchronous Distributed inserts: each shard has its rows on one of
	// its replicas once Insert returns, and on the others once they
	// replicated; both shards hold some.
	count := func(conn driver.Conn, q string) uint64 {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	want := uint64(len(rows) + len(other) + len(again))
	var s1, s2 uint64
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		s1, s2 = count(a, "SELECT count() FROM darklaunch.comparisons_local"), count(b, "SELECT count() FROM darklaunch.comparisons_local")
		if n := count(a2, "SELECT count() FROM darklaunch.comparisons_local"); n != s1 || s1+s2 != want {
			return fmt.Errorf("s1's replicas hold %d and %d rows, s2 %d, want %d in all", s1, n, s2, want)
		}
		return nil
	})
	if s1 < want/4 || s2 < want/4 {
		t.Fatalf("shards hold %d and %d rows: not spread over both", s1, s2)
	}
	t.Logf("rows per shard: s1 %d, s2 %d", s1, s2)
	// The copies collapse with FINAL: they landed on their original's shard.
	if n := count(a2, "SELECT count() FROM darklaunch.comparisons FINAL WHERE launch_id = 'l1'"); n != uint64(len(rows)) {
		t.Fatalf("FINAL through the Distributed table counts %d pairs of l1, want %d", n, len(rows))
	}

	// Compaction on each, from different servers of the cluster, then the
	// readers: the figures of the Go reference and of the single server.
	now := start.Add(7*time.Minute + 30*time.Second)
	for _, conn := range []driver.Conn{b, single} {
		if _, err := Compact(ctx, conn, db, "l1", now, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The inserts went to either replica of s1; a2 reads once it has
	// everything s1 holds.
	syncReplica := func() {
		t.Helper()
		for table := range tables {
			if err := a2.Exec(ctx, "SYSTEM SYNC REPLICA darklaunch."+table+localSuffix); err != nil {
				t.Fatal(err)
			}
		}
	}
	syncReplica()
	if n := count(a2, "SELECT count() FROM darklaunch.seals WHERE launch_id = 'l1'"); n != 8 {
		t.Fatalf("%d seals through the Distributed table, want 8", n)
	}
	type figures struct {
		pairs   []PairGroup
		diffs   []DiffGroup
		hist    []HistBin
		secHist []HistBin
	}
	read := func(conn driver.Conn, fromUS int64) figures {
		t.Helper()
		v, err := NewView(ctx, conn, db, "l1", fromUS)
		if err != nil {
			t.Fatal(err)
		}
		var f figures
		if f.pairs, err = PairGroups(ctx, conn, db, v); err != nil {
			t.Fatal(err)
		}
		if fromUS == 0 {
			if f.diffs, err = DiffGroups(ctx, conn, db, v); err != nil {
				t.Fatal(err)
			}
		}
		if f.hist, err = Histograms(ctx, conn, db, v); err != nil {
			t.Fatal(err)
		}
		if f.secHist, err = SecondaryHistograms(ctx, conn, db, v); err != nil {
			t.Fatal(err)
		}
		for i := range f.pairs {
			if !f.pairs[i].RawMismatch {
				// Any row's diffs (anyIf): the same in every row of a
				// mismatch class only.
				f.pairs[i].DiffSet = nil
			}
		}
		slices.SortFunc(f.pairs, func(x, y PairGroup) int { return strings.Compare(pairKey(x), pairKey(y)) })
		slices.SortFunc(f.diffs, func(x, y DiffGroup) int { return strings.Compare(fmt.Sprint(x), fmt.Sprint(y)) })
		slices.SortFunc(f.hist, func(x, y HistBin) int { return strings.Compare(fmt.Sprint(x), fmt.Sprint(y)) })
		slices.SortFunc(f.secHist, func(x, y HistBin) int { return strings.Compare(fmt.Sprint(x), fmt.Sprint(y)) })
		return f
	}
	for _, fromUS := range []int64{0, start.Add(7*time.Minute + 10*time.Second).UnixMicro()} {
		onCluster := read(a2, fromUS)
		checkView(t, fmt.Sprintf("cluster, from %d", fromUS), rows, onCluster.pairs, onCluster.diffs, onCluster.hist, onCluster.secHist, fromUS)
		onOne := read(single, fromUS)
		if fmt.Sprint(onCluster) != fmt.Sprint(onOne) {
			t.Errorf("from %d: the cluster's figures differ from one server's:\ncluster %v\n single %v", fromUS, onCluster, onOne)
		}
	}

	// A materialized view in the cluster form aggregates each shard's
	// inserts into its local table.
	sc, _ := newClusterSchema(db, cl.Name)
	for _, s := range []string{
		"CREATE TABLE IF NOT EXISTS darklaunch.per_launch (launch_id String, n UInt64) ENGINE = SummingMergeTree(n) ORDER BY launch_id",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS darklaunch.per_launch_mv TO darklaunch.per_launch AS SELECT launch_id, count() AS n FROM darklaunch.comparisons GROUP BY launch_id",
	} {
		out, err := sc.rewrite(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Exec(ctx, out[0]); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.distribute(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := Insert(ctx, b, db, other); err != nil {
		t.Fatal(err)
	}
	if err := a2.Exec(ctx, "SYSTEM SYNC REPLICA darklaunch.per_launch_local"); err != nil {
		t.Fatal(err)
	}
	if n := count(a2, "SELECT sum(n) FROM darklaunch.per_launch WHERE launch_id = 'l2'"); n != uint64(len(other)) {
		t.Fatalf("the view counted %d rows of l2, want %d", n, len(other))
	}

	// Retention drops a month's partitions on every shard.
	old := synthRows("old", time.Date(2026, 8, 10, 0, 0, 0, 0, time.UTC), 400, 5, 3)
	if err := Insert(ctx, a, db, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Compact(ctx, b, db, "old", time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), 0); err != nil {
		t.Fatal(err)
	}
	for _, conn := range []driver.Conn{a, b} {
		if n := count(conn, "SELECT count() FROM darklaunch.comparisons_local WHERE toYYYYMM(ts) = 202608"); n == 0 {
			t.Fatal("a shard holds none of the August rows: the drop would prove nothing")
		}
	}
	syncReplica()
	dropped, err := DropExpired(ctx, a2, db, time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), append(RawTables, AggregateTables...), 60*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"comparisons/202608", "comparisons_by_time/202608", "seals/202608", "pair_counts/202608", "diff_counts/202608", "latency_hist/202608",
		"secondary_latency_hist/202608"}; !slices.Equal(dropped, want) {
		t.Fatalf("dropped %v, want %v", dropped, want)
	}
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for node, conn := range map[string]driver.Conn{"s1r1": a, "s1r2": a2, "s2r1": b} {
			if n := count(conn, "SELECT count() FROM darklaunch.comparisons_local WHERE toYYYYMM(ts) = 202608") +
				count(conn, "SELECT count() FROM darklaunch.pair_counts_local WHERE toYYYYMM(bucket) = 202608"); n != 0 {
				return fmt.Errorf("%s still holds %d August rows", node, n)
			}
		}
		return nil
	})
	if n := count(a, "SELECT count() FROM darklaunch.comparisons FINAL WHERE launch_id = 'l1'"); n != uint64(len(rows)) {
		t.Fatalf("retention dropped November rows: %d of l1's %d pairs left", n, len(rows))
	}

	// A single-server table of the same name is never dropped to make
	// way for a Distributed one.
	if err := a.Exec(ctx, "CREATE DATABASE IF NOT EXISTS plain ON CLUSTER dl"); err != nil {
		t.Fatal(err)
	}
	if err := a.Exec(ctx, fmt.Sprintf(comparisonsDDL, "plain")); err != nil {
		t.Fatal(err)
	}
	if err := MigrateCluster(ctx, a, "plain", cl.Name); !errors.Is(err, ErrClusterSchema) {
		t.Fatalf("migrating over a single-server table: %v, want ErrClusterSchema", err)
	}
	if engines := enginesOf(t, ctx, a, "plain"); engines["comparisons"] != "ReplacingMergeTree" {
		t.Fatalf("the single-server table became %q", engines["comparisons"])
	}
}

// columnsOf are the "name type" columns of database's tables, by table.
func columnsOf(t *testing.T, ctx context.Context, conn driver.Conn, database string) map[string][]string {
	t.Helper()
	rows, err := conn.Query(ctx, "SELECT table, concat(name, ' ', type) FROM system.columns WHERE database = ?", database)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		out[table] = append(out[table], col)
	}
	return out
}

// enginesOf are the engines of database's tables, by table.
func enginesOf(t *testing.T, ctx context.Context, conn driver.Conn, database string) map[string]string {
	t.Helper()
	rows, err := conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ?", database)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, engine string
		if err := rows.Scan(&name, &engine); err != nil {
			t.Fatal(err)
		}
		out[name] = engine
	}
	return out
}
