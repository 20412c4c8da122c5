package reporter_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// TestCompactionAndStaleWhileRevalidate: the reporter seals the buckets
// of its launches by itself, and the report read from the seals equals
// the one read from the raw rows; past the cache TTL concurrent polls are
// all answered at once from the last numbers (stale, with their age)
// while one refresh runs, and a later poll gets the refreshed numbers.
func TestCompactionAndStaleWhileRevalidate(t *testing.T) {
	// Above a refresh's duration on a loaded machine (2 cores, -race, other
	// jobs): a refresh that outlasts the TTL is stale on arrival.
	const ttl = time.Second
	e := startEnv(t, envOptions{cacheTTL: ttl, compactInterval: 50 * time.Millisecond})
	l := e.create("compacted", 10)
	ctx := testenv.Context(t)
	rows := shapedRows(l.ID, time.Now().Add(-30*time.Minute).Truncate(time.Minute), 5000, 20, 3)
	if err := analytics.Insert(ctx, e.ch, testDB, rows); err != nil {
		t.Fatal(err)
	}
	// Every bucket gets sealed: the seals cover all 5000 rows.
	testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		var n uint64
		err := e.ch.QueryRow(ctx, "SELECT sum(raw_rows) FROM (SELECT bucket, argMax(raw_rows, version) AS raw_rows FROM "+testDB+
			".seals WHERE launch_id = ? GROUP BY bucket)", l.ID).Scan(&n)
		if err != nil || n != 5000 {
			return fmt.Errorf("sealed %d rows (%v)", n, err)
		}
		return nil
	})
	if m := testenv.Metrics(t, e.svc.AdminAddr()); !strings.Contains(m, `darklaunch_reporter_sealed_buckets_total{kind="sealed"} 20`) {
		t.Errorf("metrics lack the 20 sealed buckets:\n%s", m)
	}

	var first api.Report
	res := e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &first)
	if res.Header.Get("X-Darklaunch-Cache") != "miss" || first.Totals.Compared != 5000 || first.Launch == nil || first.Launch.ID != l.ID {
		t.Fatalf("first report: %s %+v", res.Header.Get("X-Darklaunch-Cache"), first.Totals)
	}
	raw, err := reporter.QueryStatsRaw(ctx, e.ch, testDB, l.ID, api.NoiseThresholds{MinCount: 5, MinRatio: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	compareStats(t, "served from the seals", &first.Stats, raw, rows)

	// New rows, then the numbers expire: 20 concurrent polls all get the
	// old numbers, stale, with their age; one refresh runs.
	more := shapedRows(l.ID+"x", time.Now().Add(-5*time.Minute), 100, 1, 4)
	for i := range more {
		more[i].LaunchID = l.ID
	}
	if err := analytics.Insert(ctx, e.ch, testDB, more); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 50*time.Millisecond)
	before := e.svc.ReportQueries()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			res, body := request(t, "GET", e.base+"/v1/launches/"+l.ID+"/report", nil, bearer("read")...)
			var rep api.Report
			if err := jsonUnmarshal(body, &rep); err != nil || res.StatusCode != 200 {
				t.Errorf("stale poll: %d %v", res.StatusCode, err)
				return
			}
			age, _ := strconv.ParseFloat(res.Header.Get("X-Darklaunch-Age"), 64)
			if c := res.Header.Get("X-Darklaunch-Cache"); c != "stale" || rep.Totals.Compared != 5000 || rep.AgeSeconds < ttl.Seconds() || age < ttl.Seconds() {
				t.Errorf("stale poll: cache %s, compared %d, age %v / header %v", c, rep.Totals.Compared, rep.AgeSeconds, age)
			}
		})
	}
	wg.Wait()
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var rep api.Report
		res := e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &rep)
		if c := res.Header.Get("X-Darklaunch-Cache"); rep.Totals.Compared != 5100 || c != "hit" {
			return fmt.Errorf("after the refresh: cache %s, compared %d", c, rep.Totals.Compared)
		}
		return nil
	})
	if q := e.svc.ReportQueries() - before; q != 1 {
		t.Fatalf("20 stale polls ran %d computations, want 1", q)
	}

	// A replica just started, with nothing in memory, answers its first
	// poll at once with the numbers another left in Redis, stale past the
	// TTL, and refreshes them.
	time.Sleep(ttl + 50*time.Millisecond)
	cfg := e.cfg
	cfg.ID = "second"
	second, err := reporter.New(cfg, testenv.Logger(t, slog.LevelWarn))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, second.Run)
	url := "http://" + second.Addr() + "/v1/launches/" + l.ID + "/report"
	testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if res, body := request(t, "GET", "http://"+second.Addr()+"/healthz", nil); res.StatusCode != 200 {
			return fmt.Errorf("second reporter not ready: %s", body)
		}
		return nil
	})
	res, body := request(t, "GET", url, nil, bearer("read")...)
	var rep api.Report
	if err := jsonUnmarshal(body, &rep); err != nil || res.Header.Get("X-Darklaunch-Cache") != "stale" || rep.Totals.Compared != 5100 || second.ReportQueries() > 1 {
		t.Fatalf("first poll of a new replica: %d %s, compared %d, %d computations", res.StatusCode, res.Header.Get("X-Darklaunch-Cache"), rep.Totals.Compared, second.ReportQueries())
	}
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if res, _ := request(t, "GET", url, nil, bearer("read")...); res.Header.Get("X-Darklaunch-Cache") != "hit" {
			return fmt.Errorf("new replica after its refresh: %s", res.Header.Get("X-Darklaunch-Cache"))
		}
		return nil
	})

	// The verdict says its age too (its window starts at the launch's
	// creation, after these rows).
	var v api.Verdict
	res = e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/verdict", nil, &v)
	if v.Window.Pairs != 0 || res.Header.Get("X-Darklaunch-Age") == "" || res.Header.Get("X-Darklaunch-Cache") != "miss" {
		t.Fatalf("verdict %+v, age header %q", v.Window, res.Header.Get("X-Darklaunch-Age"))
	}
}
