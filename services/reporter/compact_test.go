package reporter_test

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// TestCompactionLease: of two reporter replicas on one NATS and one
// ClickHouse, only the one holding the compaction lease (a key of the real
// lease bucket) compacts; when it shuts down it gives the lease up and the
// other takes over and seals the rows that arrive after.
func TestCompactionLease(t *testing.T) {
	e := startEnv(t, envOptions{}) // this one does not compact
	ctx := testenv.Context(t)
	type replica struct {
		svc *reporter.Service
		run *testenv.Running
	}
	replicas := map[string]replica{}
	for _, id := range []string{"c1", "c2"} {
		cfg := e.cfg
		cfg.ID, cfg.CompactInterval, cfg.LeaseTTL = id, 30*time.Millisecond, 10*time.Second
		svc, err := reporter.New(cfg, testenv.Logger(t, slog.LevelWarn))
		if err != nil {
			t.Fatal(err)
		}
		replicas[id] = replica{svc, testenv.Run(t, svc.Run)}
	}
	_, js := testenv.Connect(t, e.js.URL())
	kv, err := js.KeyValue(ctx, reporter.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	// holder is the replica named in the lease.
	holder := func() (string, error) {
		entry, err := kv.Get(ctx, "compaction")
		if err != nil {
			return "", fmt.Errorf("compaction lease: %w", err)
		}
		return string(entry.Value()), nil
	}
	compactions := func(r replica) int {
		m := regexp.MustCompile(`darklaunch_reporter_compactions_total\{result="ok"\} (\d+)`).FindStringSubmatch(testenv.Metrics(t, r.svc.AdminAddr()))
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	sealed := func(launchID string, want uint64) func() error {
		return func() error {
			var n uint64
			err := e.ch.QueryRow(ctx, "SELECT sum(raw_rows) FROM (SELECT bucket, argMax(raw_rows, version) AS raw_rows FROM "+testDB+
				".seals WHERE launch_id = ? GROUP BY bucket)", launchID).Scan(&n)
			if err != nil || n != want {
				return fmt.Errorf("sealed %d rows (%v), want %d", n, err, want)
			}
			return nil
		}
	}

	l := e.create("leased", 10)
	if err := analytics.Insert(ctx, e.ch, testDB, shapedRows(l.ID, time.Now().Add(-20*time.Minute).Truncate(time.Minute), 2000, 10, 5)); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, sealed(l.ID, 2000))
	var id string
	testenv.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() (err error) { id, err = holder(); return err })
	other := map[string]string{"c1": "c2", "c2": "c1"}[id]
	if other == "" {
		t.Fatalf("the compaction lease is held by %q, not by a replica", id)
	}
	// While the holder compacts many more times, the other never does
	// (it ticks as often, and is refused the lease each time).
	start := compactions(replicas[id])
	testenv.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := compactions(replicas[id]); n < start+20 {
			return fmt.Errorf("holder %s compacted %d times since, want 20", id, n-start)
		}
		return nil
	})
	if n := compactions(replicas[other]); n != 0 {
		t.Fatalf("replica %s compacted %d times without the lease (holder %s)", other, n, id)
	}

	// The holder shuts down: the other takes the lease over and seals new
	// rows.
	if err := replicas[id].run.Stop(); err != nil {
		t.Fatal(err)
	}
	more := shapedRows(l.ID+"x", time.Now().Add(-5*time.Minute).Truncate(time.Minute), 500, 2, 6)
	for i := range more {
		more[i].LaunchID = l.ID
	}
	if err := analytics.Insert(ctx, e.ch, testDB, more); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, sealed(l.ID, 2500))
	if got, err := holder(); err != nil || got != other {
		t.Fatalf("after %s stopped the lease is held by %q (%v), want %s", id, got, err, other)
	}
	if compactions(replicas[other]) == 0 {
		t.Fatalf("replica %s took the lease over but did not compact", other)
	}
}
