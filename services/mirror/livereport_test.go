package mirror

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// newFailingVersion answers 500 on /fail and "new <method> <path>" with
// 200 otherwise.
func newFailingVersion(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/fail" {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "new %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func liveBucket(t *testing.T, e *natsEnv) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := live.OpenBucket(testenv.Context(t), js)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// liveOf returns a tap's LiveStats of one launch.
func liveOf(t *testing.T, s *Service, id string) LiveStats {
	t.Helper()
	for _, ls := range s.LiveStats() {
		if ls.LaunchID == id {
			return ls
		}
	}
	t.Fatalf("tap has no live stats for %s", id)
	return LiveStats{}
}

// sumSides adds the taps' current LiveStats of a launch into live.Sides,
// independently of live.Aggregate.
func sumSides(t *testing.T, id string, taps ...*Service) (n, p live.Side) {
	t.Helper()
	n.LatencyBuckets = make([]uint64, live.NumBuckets)
	p.LatencyBuckets = make([]uint64, live.NumBuckets)
	for _, s := range taps {
		ls := liveOf(t, s, id)
		for _, x := range []struct {
			to   *live.Side
			from VersionStats
		}{{&n, ls.New}, {&p, ls.Primary}} {
			x.to.Requests += x.from.Requests
			x.to.Errors += x.from.Errors
			var observed uint64
			for i, c := range x.from.LiveBuckets {
				x.to.LatencyBuckets[i] += c
				observed += c
			}
			if observed != x.from.Latency.Count {
				t.Errorf("tap %s: %d latencies in the live buckets, %d in the Prometheus histogram", s.cfg.TapID, observed, x.from.Latency.Count)
			}
		}
	}
	return n, p
}

func sameSide(a, b live.Side) bool {
	return a.Requests == b.Requests && a.Errors == b.Errors && slices.Equal(a.LatencyBuckets, b.LatencyBuckets)
}

// waitReported waits until the live bucket, read and aggregated from since,
// holds exactly the taps' current counters of the launch, from every tap,
// and returns what was read.
func waitReported(t *testing.T, kv jetstream.KeyValue, id string, since time.Time, taps ...*Service) ([]live.Snapshot, live.Totals) {
	t.Helper()
	wantNew, wantPrimary := sumSides(t, id, taps...)
	var snaps []live.Snapshot
	var tot live.Totals
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		var err error
		if snaps, err = live.Read(testenv.Context(t), kv, id); err != nil {
			return err
		}
		tot = live.Aggregate(snaps, since)
		if tot.Taps != len(taps) || !sameSide(tot.New, wantNew) || !sameSide(tot.Primary, wantPrimary) {
			return fmt.Errorf("aggregated %d taps (%d stale): new %+v primary %+v; want %d taps: new %+v primary %+v",
				tot.Taps, tot.Stale, tot.New, tot.Primary, len(taps), wantNew, wantPrimary)
		}
		return nil
	})
	return snaps, tot
}

// Two taps route one launch live at 50%, sticky per user, and each writes
// its counters to the live bucket: read and aggregated, they equal the sum
// of both taps' LiveStats, exactly as many requests as the users within
// 50% made, with the new version's 500s in the new side's errors only.
// When live_percent moves to 80%, both taps start counting afresh (Since
// moves), the bucket follows, and the old step's snapshots are left out.
func TestLiveReportsSumAcrossTapsAndRestartWithTheStep(t *testing.T) {
	e := newNATSEnv(t)
	kv := liveBucket(t, e)
	primary := newVersionServer(t, "primary")
	shadow, _ := newFailingVersion(t)
	interval := func(c *Config) { c.LiveReportInterval = 20 * time.Millisecond }
	a, _ := startMirror(t, e, primary.URL, func(c *Config) { interval(c); c.TapID = "tap-a" })
	b, _ := startMirror(t, e, primary.URL, func(c *Config) { interval(c); c.TapID = "tap-b" })
	c := newClient(t)

	start1 := time.Now()
	l := e.create(t, launch.Launch{ShadowURL: shadow.URL, StickyKey: "header:" + userHeader},
		func(l *launch.Launch) error { return l.SetLive(50) })
	waitRouting(t, a, l)
	waitRouting(t, b, l)
	users := userIDs(200)
	taps := []*Service{a, b}
	// Each user fetches /ok through one tap and /fail through the other.
	parallel(2*len(users), func(i int) {
		u, fail := users[i/2], i%2 == 1
		path := "/ok"
		if fail {
			path = "/fail"
		}
		tap := taps[(i/2+i)%2]
		resp, body := do(t, c, "GET", "http://"+tap.Addr()+path, u)
		if onNew := strings.HasPrefix(body, "new ") || resp.StatusCode == 500; onNew != launch.InSample(launch.UserBucket(l.ID, u), 50) {
			t.Errorf("user %s %s: %d %q", u, path, resp.StatusCode, body)
		}
	})
	in := uint64(len(usersIn(l.ID, users, 50)))
	out := uint64(len(users)) - in
	for _, s := range taps {
		if ls := liveOf(t, s, l.ID); ls.LivePercent != 50 || ls.Since.Before(start1) || ls.Since.After(time.Now()) {
			t.Errorf("tap %s: live percent %v since %v (step started %v)", s.cfg.TapID, ls.LivePercent, ls.Since, start1)
		}
	}
	n, p := sumSides(t, l.ID, a, b)
	if in == 0 || out == 0 || n.Requests != 2*in || n.Errors != in || p.Requests != 2*out || p.Errors != 0 {
		t.Fatalf("%d users in, %d out; new %+v, primary %+v", in, out, n, p)
	}
	oldSnaps, tot := waitReported(t, kv, l.ID, start1, a, b)
	if tot.Stale != 0 || tot.New.ErrorRate() != 0.5 || tot.ErrorRateDelta() != 0.5 || tot.MinRequests() != 2*min(in, out) ||
		tot.New.Quantile(0.5) <= 0 || tot.LatencyRatio(0.95) <= 0 {
		t.Errorf("totals %+v: delta %v, p50 new %v, p95 ratio %v", tot, tot.ErrorRateDelta(), tot.New.Quantile(0.5), tot.LatencyRatio(0.95))
	}
	for _, s := range oldSnaps {
		if s.LivePercent != 50 || s.LaunchID != l.ID || !s.At.After(s.Since) {
			t.Errorf("snapshot %+v", s)
		}
	}
	if _, p := tot.ErrorRateZTest(); p > 1e-6 {
		t.Errorf("z-test p %v for 50%% errors against none", p)
	}

	// The next step: users move, counting starts afresh on both taps.
	start2 := time.Now()
	l = e.update(t, l.ID, func(l *launch.Launch) error { return l.SetLive(80) })
	waitRouting(t, a, l)
	waitRouting(t, b, l)
	for _, s := range taps {
		ls := liveOf(t, s, l.ID)
		if ls.LivePercent != 80 || ls.Since.Before(start2) || ls.New.Requests+ls.Primary.Requests != 0 {
			t.Errorf("tap %s after the step: %v%% since %v (step started %v), %d+%d requests",
				s.cfg.TapID, ls.LivePercent, ls.Since, start2, ls.New.Requests, ls.Primary.Requests)
		}
	}
	parallel(len(users), func(i int) { do(t, c, "GET", "http://"+a.Addr()+"/ok", users[i]) })
	in80 := uint64(len(usersIn(l.ID, users, 80)))
	n, p = sumSides(t, l.ID, a, b)
	if n.Requests != in80 || p.Requests != uint64(len(users))-in80 || n.Errors+p.Errors != 0 {
		t.Fatalf("after the step: %d users in; new %+v primary %+v", in80, n, p)
	}
	newSnaps, tot := waitReported(t, kv, l.ID, start2, a, b)
	if tot.Stale != 0 || tot.From.Before(start2) {
		t.Errorf("totals of the new step: %+v", tot)
	}
	mixed := live.Aggregate(append(slices.Clone(oldSnaps), newSnaps...), start2)
	if mixed.Taps != 2 || mixed.Stale != 2 || !sameSide(mixed.New, n) || !sameSide(mixed.Primary, p) {
		t.Errorf("old and new snapshots aggregated from the new step: %+v", mixed)
	}

	// Prometheus counts both steps: its counters never go down.
	m := testenv.Metrics(t, a.AdminAddr())
	want := in + liveOf(t, a, l.ID).New.Requests // each user within 50% sent one request through a
	if line := fmt.Sprintf(`darklaunch_mirror_live_requests_total{launch=%q,version="new"} %d`, l.ID, want); !strings.Contains(m, line) {
		t.Errorf("metrics lack %s:\n%s", line, grepLines(m, "live_requests"))
	}
	if st := a.Stats(); st.LiveReports == 0 || st.LiveReportErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A tap writes its final counters at shutdown, after the requests in
// flight have finished, even when its interval has not come round.
func TestLiveReportAtShutdown(t *testing.T) {
	e := newNATSEnv(t)
	kv := liveBucket(t, e)
	primary := newVersionServer(t, "primary")
	shadow, hits := newFailingVersion(t)
	s, stop := startMirror(t, e, primary.URL, func(c *Config) { c.LiveReportInterval = time.Hour; c.TapID = "tap/one" })
	c := newClient(t)
	l := e.create(t, launch.Launch{ShadowURL: shadow.URL}, func(l *launch.Launch) error { return l.SetLive(100) })
	waitRouting(t, s, l)
	for i := range 7 {
		path := "/ok"
		if i < 2 {
			path = "/fail"
		}
		do(t, c, "GET", "http://"+s.Addr()+path, "")
	}
	if got, err := live.Read(testenv.Context(t), kv, l.ID); err != nil || len(got) != 0 {
		t.Fatalf("before shutdown: %+v, %v", got, err)
	}
	stop()
	got, err := live.Read(testenv.Context(t), kv, l.ID)
	if err != nil || len(got) != 1 {
		t.Fatalf("after shutdown: %+v, %v", got, err)
	}
	snap := got[0]
	if snap.TapID != "tap/one" || snap.LivePercent != 100 || snap.New.Requests != 7 || snap.New.Errors != 2 ||
		(live.Side{LatencyBuckets: snap.New.LatencyBuckets}).Observed() != 7 || snap.Primary.Requests != 0 || hits.Load() != 7 {
		t.Errorf("final snapshot %+v", snap)
	}
	if _, err := kv.Get(testenv.Context(t), l.ID+".tap_one"); err != nil {
		t.Errorf("key: %v", err)
	}
	if st := s.Stats(); st.LiveReports != 1 || st.LiveReportErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// With NATS down, live reports fail and are counted while the new version
// keeps serving; when NATS is back, the reports resume with the counts
// made meanwhile.
func TestLiveReportFailuresAreCountedNotFelt(t *testing.T) {
	e := newNATSEnv(t)
	primary := newVersionServer(t, "primary")
	shadow, _ := newFailingVersion(t)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.LiveReportInterval = 20 * time.Millisecond })
	c := newClient(t)
	l := e.create(t, launch.Launch{ShadowURL: shadow.URL}, func(l *launch.Launch) error { return l.SetLive(100) })
	waitRouting(t, s, l)
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s.Stats().LiveReports == 0 {
			return errNotYet
		}
		return nil
	})

	e.js.Stop()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s.Stats().LiveReportErrors == 0 {
			return errNotYet
		}
		return nil
	})
	for i := range 20 {
		if resp, body := do(t, c, "GET", "http://"+s.Addr()+"/x"+strconv.Itoa(i), ""); resp.StatusCode != 200 || !strings.HasPrefix(body, "new ") {
			t.Fatalf("with NATS down: %d %q", resp.StatusCode, body)
		}
	}

	e.js.Start()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !e.nc.IsConnected() {
			return errNotYet
		}
		return nil
	})
	kv := liveBucket(t, e)
	waitReported(t, kv, l.ID, time.Time{}, s)
	if n := liveOf(t, s, l.ID).New.Requests; n != 20 {
		t.Errorf("%d requests counted", n)
	}
}
