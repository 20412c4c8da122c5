package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"
)

// capConfig is a test runner whose fleet count follows within 100 ms.
func (h *harness) capConfig(id string) Config {
	cfg := h.testConfig(id)
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.HeartbeatTTL = 15 * time.Second
	return cfg
}

// startCapped starts a healthy shadow, a launch on it capped at maxRPS (0:
// no cap) and a ready runner with the given id.
func (h *harness) startCapped(maxRPS float64, id string) (*shadow, *launch.Launch, *runner) {
	h.t.Helper()
	sh := newShadow(h.t, nil)
	return sh, h.createCappedLaunch(sh.URL, maxRPS), h.runReady(h.capConfig(id))
}

func (h *harness) createCappedLaunch(shadowURL string, maxRPS float64) *launch.Launch {
	h.t.Helper()
	l, err := h.store.Create(h.ctx, launch.Launch{
		Name: "capped", ShadowURL: shadowURL, SamplePercent: 100, Methods: []string{"GET"}, MaxRPS: maxRPS,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

func (h *harness) setMaxRPS(r *runner, id string, maxRPS float64) {
	h.t.Helper()
	if _, err := h.store.Update(h.ctx, id, func(l *launch.Launch) error { l.MaxRPS = maxRPS; return nil }); err != nil {
		h.t.Fatal(err)
	}
	testenv.CheckFor(h.t, 5*time.Second, 5*time.Millisecond, func() error {
		if l := r.watcher.Snapshot().ByID[id]; l == nil || l.MaxRPS != maxRPS {
			return fmt.Errorf("runner has not seen max_rps %v yet", maxRPS)
		}
		return nil
	})
}

func (h *harness) runnersBucket() jetstream.KeyValue {
	h.t.Helper()
	kv, err := h.js.KeyValue(h.ctx, RunnersBucket)
	if err != nil {
		h.t.Fatal(err)
	}
	return kv
}

// waitRunners polls until r counts n live runners.
func waitRunners(t *testing.T, r *runner, n int64, within time.Duration) {
	t.Helper()
	testenv.CheckFor(t, within, 5*time.Millisecond, func() error {
		if got := r.Stats().Runners; got != n {
			return fmt.Errorf("runner %s counts %d runners, want %d", r.ID(), got, n)
		}
		return nil
	})
}

// publishBurst publishes n envelopes of the launch as fast as it can.
func (h *harness) publishBurst(launchID string, n int) {
	h.t.Helper()
	for i := range n {
		h.publishEnvelope(newEnvelope(launchID, "GET", fmt.Sprintf("/item/%d", i), "", nil))
	}
}

// waitHandled polls until the runners together have replayed or skipped
// (over the cap) want envelopes and every one is acked.
func (h *harness) waitHandled(want int64, rs ...*runner) {
	h.t.Helper()
	testenv.CheckFor(h.t, 20*time.Second, 5*time.Millisecond, func() error {
		var got int64
		for _, r := range rs {
			st := r.Stats()
			got += st.Replayed + st.RateLimited
		}
		if got != want {
			return fmt.Errorf("%d envelopes replayed or rate-limited, want %d", got, want)
		}
		if n, err := h.streamMsgs(stream.EnvelopesStream); err != nil || n != 0 {
			return fmt.Errorf("envelopes stream holds %d (%v), want 0", n, err)
		}
		return nil
	})
}

// A burst far over max_rps: the limiter's burst passes at once, then the
// rate; the rest is acked without replay and counted, and nothing waits.
func TestMaxRPSSkipsOverTheCap(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const maxRPS, n = 20, 300
	sh, l, r := h.startCapped(maxRPS, "runner-cap")

	start := time.Now()
	h.publishBurst(l.ID, n)
	h.waitHandled(n, r)
	elapsed := time.Since(start)

	st := r.Stats()
	bound := maxRPS*elapsed.Seconds() + maxRPS // rate x window + the burst of one runner
	t.Logf("replayed %d, rate-limited %d in %s (bound %.1f)", st.Replayed, st.RateLimited, elapsed, bound)
	if float64(st.Replayed) > bound {
		t.Errorf("replayed %d in %s: over max_rps %d (bound %.1f)", st.Replayed, elapsed, maxRPS, bound)
	}
	if st.Replayed < maxRPS {
		t.Errorf("replayed %d, want at least the burst of %d", st.Replayed, maxRPS)
	}
	if st.RateLimited != n-st.Replayed || st.Skipped != st.RateLimited || st.Received != n {
		t.Errorf("stats %+v: want every envelope replayed or rate-limited, once", st)
	}
	if got := int64(len(sh.requests())); got != st.Replayed {
		t.Errorf("shadow got %d requests, runner replayed %d", got, st.Replayed)
	}
	if got, err := h.streamMsgs(stream.PairsStream); err != nil || int64(got) != st.Replayed {
		t.Errorf("%d pairs (%v), want one per replay (%d)", got, err, st.Replayed)
	}
	testenv.WantMetrics(t, r.AdminAddr(),
		fmt.Sprintf(`darklaunch_shadow_runner_skipped_total{reason="rate_limited"} %d`, st.RateLimited),
		fmt.Sprintf(`darklaunch_shadow_runner_replays_total %d`, st.Replayed),
		`darklaunch_shadow_runner_runners 1`,
	)
}

// Two runners on the same consumer split the cap: together they stay
// within max_rps plus their two bursts over the whole window.
func TestMaxRPSIsSharedByTheRunners(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sh := newShadow(t, nil)
	const maxRPS, n = 20, 200
	l := h.createCappedLaunch(sh.URL, maxRPS)
	a := h.runReady(h.capConfig("runner-a"))
	b := h.runReady(h.capConfig("runner-b"))
	waitRunners(t, a, 2, 5*time.Second)
	waitRunners(t, b, 2, 5*time.Second)

	// Spread over about a second so both runners keep pulling work and the
	// rate, not just the bursts, is measured.
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	for i := range n {
		<-tick.C
		h.publishEnvelope(newEnvelope(l.ID, "GET", fmt.Sprintf("/item/%d", i), "", nil))
	}
	tick.Stop()
	h.waitHandled(n, a, b)
	elapsed := time.Since(start)

	sa, sb := a.Stats(), b.Stats()
	replayed := sa.Replayed + sb.Replayed
	burst := 2 * float64(maxRPS/2) // each runner's burst is its share, 10
	bound := maxRPS*elapsed.Seconds() + burst
	t.Logf("replayed %d (a %d, b %d), rate-limited %d in %s (bound %.1f)",
		replayed, sa.Replayed, sb.Replayed, sa.RateLimited+sb.RateLimited, elapsed, bound)
	if float64(replayed) > bound {
		t.Errorf("two runners replayed %d in %s: over the shared max_rps %d (bound %.1f)", replayed, elapsed, maxRPS, bound)
	}
	for _, st := range []Stats{sa, sb} {
		if st.Received == 0 {
			t.Errorf("a runner got no envelopes (a %+v, b %+v)", sa, sb)
		}
		// Each runner's limiter starts full with its share: its first 10
		// envelopes pass.
		if st.Replayed < min(st.Received, maxRPS/2) {
			t.Errorf("a runner replayed %d of %d received, want at least its burst of %d", st.Replayed, st.Received, maxRPS/2)
		}
	}
	if sa.Replayed+sa.RateLimited+sb.Replayed+sb.RateLimited != n {
		t.Errorf("stats a %+v b %+v: want %d envelopes replayed or rate-limited", sa, sb, n)
	}
}

// A runner that shuts down deletes its key: the others count it out at
// once, not after the key's max age (15 s here).
func TestStoppedRunnerLeavesTheFleet(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.runReady(h.capConfig("runner-a"))
	b := h.runReady(h.capConfig("runner.b/x"))
	waitRunners(t, a, 2, 5*time.Second)
	waitRunners(t, b, 2, 5*time.Second)

	kv := h.runnersBucket()
	for _, r := range []*runner{a, b} {
		e, err := kv.Get(h.ctx, runnerKey(r.ID()))
		if err != nil {
			t.Fatalf("key of %s: %v", r.ID(), err)
		}
		var hb Heartbeat
		if err := json.Unmarshal(e.Value(), &hb); err != nil {
			t.Fatalf("heartbeat of %s: %v", r.ID(), err)
		}
		if hb.ID != r.ID() || hb.StartedAt.IsZero() || hb.HeartbeatAt.Before(hb.StartedAt) {
			t.Errorf("heartbeat of %s: %+v", r.ID(), hb)
		}
	}
	if st, err := kv.Status(h.ctx); err != nil || st.TTL() != 15*time.Second {
		t.Errorf("runners bucket max age %v (%v), want 15s", st.TTL(), err)
	}

	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(h.ctx, runnerKey(b.ID())); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("stopped runner's key: %v, want it deleted", err)
	}
	waitRunners(t, a, 1, 5*time.Second)
	if !strings.Contains(testenv.Metrics(t, a.AdminAddr()), "darklaunch_shadow_runner_runners 1") {
		t.Error("the runners gauge does not show 1")
	}
	if _, err := kv.Get(h.ctx, runnerKey(a.ID())); err != nil {
		t.Errorf("the live runner's key: %v", err)
	}
}

// A runner that dies without deleting its key stops counting once the key
// reaches the bucket's max age; live runners' keys stay, refreshed.
func TestDeadRunnerExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cfg := h.capConfig("runner-a")
	cfg.HeartbeatTTL = time.Second
	a := h.runReady(cfg)

	// A runner that heartbeated once and died.
	ghost, _ := json.Marshal(Heartbeat{ID: "ghost", StartedAt: time.Now().UTC(), HeartbeatAt: time.Now().UTC()})
	kv := h.runnersBucket()
	if _, err := kv.Put(h.ctx, "ghost", ghost); err != nil {
		t.Fatal(err)
	}
	waitRunners(t, a, 2, 5*time.Second)
	waitRunners(t, a, 1, 10*time.Second)
	if _, err := kv.Get(h.ctx, "ghost"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("ghost key: %v, want expired", err)
	}
	// More than the max age has passed since a started: its own key lives on.
	if _, err := kv.Get(h.ctx, runnerKey(a.ID())); err != nil {
		t.Errorf("the live runner's key: %v", err)
	}
}

func TestNoMaxRPSNoLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, l, r := h.startCapped(0, "runner-free")

	const n = 300
	h.publishBurst(l.ID, n)
	h.waitHandled(n, r)
	if st := r.Stats(); st.Replayed != n || st.RateLimited != 0 || st.Skipped != 0 {
		t.Errorf("stats %+v: want all %d replayed", st, n)
	}
	if r.cap.limiter(l.ID) != nil {
		t.Error("a launch without max_rps got a limiter")
	}
}

// max_rps changed through the store applies to the next envelopes, with
// no restart: set, raised (the same limiter, updated), removed.
func TestMaxRPSChangeAppliesWithoutRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, l, r := h.startCapped(0, "runner-change")
	const n = 100
	var done int64

	h.publishBurst(l.ID, n)
	done += n
	h.waitHandled(done, r)
	if st := r.Stats(); st.Replayed != n || st.RateLimited != 0 {
		t.Fatalf("no cap yet: stats %+v", st)
	}

	var lim *rate.Limiter
	for i, maxRPS := range []float64{5, 10} {
		h.setMaxRPS(r, l.ID, maxRPS)
		before := r.Stats()
		start := time.Now()
		h.publishBurst(l.ID, n)
		done += n
		h.waitHandled(done, r)
		elapsed := time.Since(start)
		st := r.Stats()
		replayed := st.Replayed - before.Replayed
		// The tokens on hand never exceed the current burst (= max_rps
		// with one runner), whatever was left from before.
		bound := maxRPS*elapsed.Seconds() + maxRPS
		t.Logf("max_rps %v: replayed %d of %d in %s (bound %.1f)", maxRPS, replayed, n, elapsed, bound)
		// A new limiter starts full; the raised one keeps what it had
		// earned, which may be nothing.
		if float64(replayed) > bound || (i == 0 && replayed < int64(maxRPS)) || st.RateLimited-before.RateLimited != n-replayed {
			t.Errorf("max_rps %v: replayed %d, rate-limited %d of %d in %s (bound %.1f)",
				maxRPS, replayed, st.RateLimited-before.RateLimited, n, elapsed, bound)
		}
		cur := r.cap.limiter(l.ID)
		if cur == nil || float64(cur.Limit()) != maxRPS || cur.Burst() != int(maxRPS) {
			t.Fatalf("max_rps %v: limiter %+v", maxRPS, cur)
		}
		if lim != nil && lim != cur {
			t.Error("raising max_rps replaced the limiter instead of updating it")
		}
		lim = cur
	}

	h.setMaxRPS(r, l.ID, 0)
	before := r.Stats()
	h.publishBurst(l.ID, n)
	done += n
	h.waitHandled(done, r)
	if st := r.Stats(); st.Replayed-before.Replayed != n || st.RateLimited != before.RateLimited {
		t.Errorf("cap removed: replayed %d of %d", st.Replayed-before.Replayed, n)
	}
	// The next fleet tick forgets the limiter of a launch without a cap.
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if r.cap.limiter(l.ID) != nil {
			return errors.New("limiter still kept")
		}
		return nil
	})
}

// Two processes with the same RUNNER_ID would count as one runner and
// together exceed the cap: each notices the other's writes on its key.
func TestDuplicateRunnerIDIsReported(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.runReady(h.capConfig("same-id"))
	b := h.runReady(h.capConfig("same-id"))
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if testutil.ToFloat64(a.m.idCollisions) == 0 || testutil.ToFloat64(b.m.idCollisions) == 0 {
			return errors.New("no collision reported yet")
		}
		return nil
	})
	if !strings.Contains(testenv.Metrics(t, a.AdminAddr()), "darklaunch_shadow_runner_runner_id_collisions_total") {
		t.Error("collisions metric not exported")
	}
}
