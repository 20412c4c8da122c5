package reporter

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

func steps(spec ...any) []launch.Step {
	var out []launch.Step
	for i := 0; i+1 < len(spec); i += 2 {
		out = append(out, launch.Step{Percent: float64(spec[i].(int)), Hold: launch.Duration(spec[i+1].(time.Duration))})
	}
	return out
}

func verdictOf(v string, pairs uint64, reasons ...string) *api.Verdict {
	return &api.Verdict{Verdict: v, Reasons: reasons, Window: api.Window{Pairs: pairs}}
}

func TestDecide(t *testing.T) {
	t0 := mustTime("2026-11-26T06:00:00Z")
	ramped := func(status launch.Status, step int, r launch.Ramp) *launch.Launch {
		return &launch.Launch{ID: "l", Status: status, Ramp: &r, RampStep: step, StepStartedAt: t0, SamplePercent: 1}
	}
	shadow := steps(1, 5*time.Minute, 10, 10*time.Minute, 50, 30*time.Minute)
	live := steps(10, 10*time.Minute, 50, 10*time.Minute)
	pass, fail, thin := verdictOf(api.VerdictPass, 500), verdictOf(api.VerdictFail, 500, "mismatch_rate 5% is above 1%"), verdictOf(api.VerdictInconclusive, 3, "only 3 of the 100 pairs")
	for _, c := range []struct {
		name   string
		l      *launch.Launch
		v      *api.Verdict
		at     time.Duration
		action string
		reason string
	}{
		{"hold not elapsed", ramped(launch.StatusActive, 0, launch.Ramp{Steps: shadow}), pass, 4 * time.Minute, "", "1m of its hold left"},
		{"advance after the hold", ramped(launch.StatusActive, 0, launch.Ramp{Steps: shadow}), pass, 5 * time.Minute, analytics.AuditStepAdvanced, "sample to 10%"},
		{"inconclusive stays past the hold", ramped(launch.StatusActive, 1, launch.Ramp{Steps: shadow}), thin, time.Hour, "", "inconclusive at step 2 of 3"},
		{"fail rolls back at once with auto_rollback", ramped(launch.StatusActive, 1, launch.Ramp{Steps: shadow, AutoRollback: true}), fail, time.Second, analytics.AuditRolledBack, "mismatch_rate 5%"},
		{"fail without auto_rollback is recorded", ramped(launch.StatusActive, 1, launch.Ramp{Steps: shadow}), fail, time.Hour, analytics.AuditGateFailed, "auto_rollback is off"},
		{"last step without auto_promote stays", ramped(launch.StatusActive, 2, launch.Ramp{Steps: shadow}), pass, time.Hour, "", "promote by hand"},
		{"last step promotes at once", ramped(launch.StatusActive, 2, launch.Ramp{Steps: shadow, AutoPromote: true}), pass, time.Hour, analytics.AuditPromoted, "live traffic to 100%"},
		{"last step promotes to the first live step", ramped(launch.StatusActive, 2, launch.Ramp{Steps: shadow, AutoPromote: true, LiveSteps: live}), pass, time.Hour, analytics.AuditPromoted, "live traffic to 10%"},
		{"last step holds before promoting", ramped(launch.StatusActive, 2, launch.Ramp{Steps: shadow, AutoPromote: true}), pass, 29 * time.Minute, "", "1m of its hold left"},
		{"paused is left alone", ramped(launch.StatusPaused, 0, launch.Ramp{Steps: shadow, AutoRollback: true}), fail, time.Hour, "", ""},
		{"no ramp", &launch.Launch{Status: launch.StatusActive}, fail, time.Hour, "", ""},
		{"rolled back is final", ramped(launch.StatusRolledBack, 0, launch.Ramp{Steps: shadow, AutoRollback: true}), fail, time.Hour, "", ""},
		{"live step holds", ramped(launch.StatusPromoting, 0, launch.Ramp{Steps: shadow, LiveSteps: live}), pass, 9 * time.Minute, "", "live gates pass at live step 1 of 2 at 10%; 1m of its hold left"},
		{"live step advances", ramped(launch.StatusPromoting, 0, launch.Ramp{Steps: shadow, LiveSteps: live}), pass, 10 * time.Minute, analytics.AuditLiveStep, "live traffic to 50%"},
		{"last live step completes", ramped(launch.StatusPromoting, 1, launch.Ramp{Steps: shadow, LiveSteps: live}), pass, 10 * time.Minute, analytics.AuditPromoted, "live traffic to 100%"},
		{"live step to 100 completes", ramped(launch.StatusPromoting, 0, launch.Ramp{LiveSteps: steps(20, time.Minute, 100, time.Duration(0))}), pass, time.Minute, analytics.AuditPromoted, "to 100%"},
		{"thin live traffic stays", ramped(launch.StatusPromoting, 0, launch.Ramp{Steps: shadow, LiveSteps: live}), thin, time.Hour, "", "inconclusive at live step 1 of 2"},
		{"failing live gate rolls back", ramped(launch.StatusPromoting, 1, launch.Ramp{Steps: shadow, LiveSteps: live, AutoRollback: true}), fail, time.Second, analytics.AuditRolledBack, "gate failed at live step 2 of 2"},
		{"failing live gate without auto_rollback", ramped(launch.StatusPromoting, 1, launch.Ramp{Steps: shadow, LiveSteps: live}), fail, time.Second, analytics.AuditGateFailed, "auto_rollback is off"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.l, c.v, t0.Add(c.at))
			if d.Action != c.action || !strings.Contains(d.Reason, c.reason) {
				t.Fatalf("Decide = %+v, want action %q with reason containing %q", d, c.action, c.reason)
			}
			if d.Stays() {
				return
			}
			l := *c.l
			now := t0.Add(c.at)
			if err := Apply(&l, d, now); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if err := l.Normalize(); err != nil && !strings.Contains(err.Error(), "name is required") {
				t.Fatalf("applied launch is invalid: %v", err)
			}
		})
	}
}

func TestApply(t *testing.T) {
	now := mustTime("2026-11-26T07:00:00Z")
	r := launch.Ramp{Steps: steps(1, time.Minute, 10, time.Minute), LiveSteps: steps(25, time.Minute, 60, time.Minute)}
	l := launch.Launch{Status: launch.StatusActive, Ramp: &r, SamplePercent: 3}
	if err := Apply(&l, Decision{Action: analytics.AuditStepAdvanced}, now); err != nil || l.RampStep != 1 || l.SamplePercent != 10 || !l.StepStartedAt.Equal(now) {
		t.Fatalf("advance: %v %+v", err, l)
	}
	if err := Apply(&l, Decision{Action: analytics.AuditPromoted}, now); err != nil || l.Status != launch.StatusPromoting || l.LivePercent != 25 || l.RampStep != 0 {
		t.Fatalf("promote: %v %+v", err, l)
	}
	if err := Apply(&l, Decision{Action: analytics.AuditLiveStep}, now); err != nil || l.LivePercent != 60 || l.RampStep != 1 {
		t.Fatalf("live step: %v %+v", err, l)
	}
	if err := Apply(&l, Decision{Action: analytics.AuditPromoted}, now); err != nil || l.Status != launch.StatusPromoted || l.LivePercent != 100 {
		t.Fatalf("complete: %v %+v", err, l)
	}
	rb := launch.Launch{Status: launch.StatusPromoting, LivePercent: 50, Ramp: &r}
	if err := Apply(&rb, Decision{Action: analytics.AuditRolledBack}, now); err != nil || rb.Status != launch.StatusRolledBack || rb.LivePercent != 0 || rb.Live() || rb.Mirrored() {
		t.Fatalf("rollback: %v %+v", err, rb)
	}
	if err := Apply(&rb, Decision{Action: analytics.AuditPromoted}, now); !errors.Is(err, launch.ErrConflict) {
		t.Fatalf("promote after rollback: %v", err)
	}
}

// fakeStore is an in-memory launch.Store with the same optimistic
// concurrency: Update re-reads and re-applies on a concurrent write.
type fakeStore struct {
	mu       sync.Mutex
	launches map[string]launch.Launch
	rev      uint64
	// interfere, when set, runs once inside the next Update between its
	// read and its write, as a concurrent writer would.
	interfere func(*launch.Launch)
}

func (f *fakeStore) put(l launch.Launch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	l.Revision = f.rev
	f.launches[l.ID] = l
}

func (f *fakeStore) get(id string) launch.Launch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.launches[id]
}

func (f *fakeStore) List(context.Context) ([]*launch.Launch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*launch.Launch
	for _, l := range f.launches {
		c := l
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *launch.Launch) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f *fakeStore) Update(ctx context.Context, id string, change func(*launch.Launch) error) (*launch.Launch, error) {
	for {
		l := f.get(id)
		if l.ID == "" {
			return nil, launch.ErrNotFound
		}
		f.mu.Lock()
		if f.interfere != nil {
			other := f.launches[id]
			f.interfere(&other)
			f.interfere = nil
			f.rev++
			other.Revision = f.rev
			f.launches[id] = other
		}
		f.mu.Unlock()
		if err := change(&l); err != nil {
			return nil, err
		}
		f.mu.Lock()
		if f.launches[id].Revision != l.Revision {
			f.mu.Unlock()
			continue // someone wrote in between: re-read and re-apply
		}
		f.rev++
		l.Revision = f.rev
		l.UpdatedAt = time.Now().UTC()
		f.launches[id] = l
		f.mu.Unlock()
		return &l, nil
	}
}

// grantAll holds every lease.
type grantAll struct {
	mu   sync.Mutex
	held map[string]bool
}

func (g *grantAll) Hold(_ context.Context, id string) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held[id] = true
	return true, nil
}

func (g *grantAll) Release(_ context.Context, id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.held, id)
}

func (g *grantAll) Held() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ids []string
	for id := range g.held {
		ids = append(ids, id)
	}
	return ids
}

// harness runs a controller over a fake store with scripted verdicts.
type harness struct {
	store    *fakeStore
	mu       sync.Mutex
	verdicts map[string]string // launch id → verdict the next computations give
	audit    []api.AuditEntry
	asked    map[string]int // verdict computations per launch
}

func newHarness() *harness {
	return &harness{store: &fakeStore{launches: map[string]launch.Launch{}}, verdicts: map[string]string{}, asked: map[string]int{}}
}

func (h *harness) setVerdict(id, v string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.verdicts[id] = v
}

func (h *harness) actions(id string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.audit {
		if e.LaunchID == id {
			out = append(out, e.Action)
		}
	}
	return out
}

func (h *harness) controller() *controller {
	return &controller{
		actor: "controller:test", store: h.store, leases: &grantAll{held: map[string]bool{}},
		verdict: func(_ context.Context, l *launch.Launch) (*api.Verdict, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.asked[l.ID]++
			v := h.verdicts[l.ID]
			if v == "" {
				v = api.VerdictInconclusive
			}
			return verdictOf(v, 200, "scripted "+v), nil
		},
		audit: func(e api.AuditEntry) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.audit = append(h.audit, e)
		},
		interval: 2 * time.Second, timeout: 10 * time.Second, log: discardLogger(), noted: map[string]string{},
	}
}

// TestControllerTiming runs the controller loop on a fake clock
// (testing/synctest): hours of ramp pass in milliseconds, and each check
// happens at an exact point of fake time.
func TestControllerTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		start := time.Now().UTC()
		ramp := func(r launch.Ramp) *launch.Ramp { return &r }
		shadow := steps(1, 5*time.Minute, 10, 10*time.Minute, 50, 30*time.Minute)
		for _, l := range []launch.Launch{
			// "advance": clean all the way, promoted stepwise.
			{ID: "advance", Status: launch.StatusActive, SamplePercent: 1, StepStartedAt: start,
				Ramp: ramp(launch.Ramp{Steps: shadow, AutoPromote: true, AutoRollback: true, LiveSteps: steps(25, 10*time.Minute, 100, time.Duration(0))})},
			// "thin": never enough pairs.
			{ID: "thin", Status: launch.StatusActive, SamplePercent: 1, StepStartedAt: start, Ramp: ramp(launch.Ramp{Steps: shadow, AutoPromote: true})},
			// "bad": fails mid-ramp, rolled back.
			{ID: "bad", Status: launch.StatusActive, SamplePercent: 1, StepStartedAt: start, Ramp: ramp(launch.Ramp{Steps: shadow, AutoRollback: true})},
			// "manual-fail": fails without auto_rollback: stays, recorded once.
			{ID: "manual-fail", Status: launch.StatusActive, SamplePercent: 1, StepStartedAt: start, Ramp: ramp(launch.Ramp{Steps: shadow})},
			// "paused": would advance and fail, but is paused.
			{ID: "paused", Status: launch.StatusPaused, SamplePercent: 1, StepStartedAt: start, Ramp: ramp(launch.Ramp{Steps: shadow, AutoRollback: true})},
			// "override": a person sets 7% by hand on step 1.
			{ID: "override", Status: launch.StatusActive, SamplePercent: 1, StepStartedAt: start, Ramp: ramp(launch.Ramp{Steps: shadow})},
		} {
			h.store.put(l)
		}
		for _, id := range []string{"advance", "bad", "manual-fail", "paused", "override"} {
			h.setVerdict(id, api.VerdictPass)
		}
		ctx, cancel := context.WithCancel(t.Context())
		c := h.controller()
		done := make(chan struct{})
		go func() { defer close(done); c.Run(ctx) }()

		at := func(d time.Duration) {
			t.Helper()
			time.Sleep(start.Add(d).Sub(time.Now()))
			synctest.Wait()
		}
		expect := func(id string, status launch.Status, step int, percent, live float64) {
			t.Helper()
			l := h.store.get(id)
			if l.Status != status || l.RampStep != step || l.SamplePercent != percent || l.LivePercent != live {
				t.Fatalf("at +%s %s: status %s step %d sample %v live %v; want %s step %d sample %v live %v (audit %v)",
					time.Since(start), id, l.Status, l.RampStep, l.SamplePercent, l.LivePercent, status, step, percent, live, h.actions(id))
			}
		}

		// Just before the first hold ends: nothing moved.
		at(4*time.Minute + 59*time.Second)
		for _, id := range []string{"advance", "thin", "bad", "override"} {
			expect(id, launch.StatusActive, 0, 1, 0)
		}
		// The first tick after 5 minutes advances the passing launches.
		at(5*time.Minute + time.Second)
		expect("advance", launch.StatusActive, 1, 10, 0)
		expect("bad", launch.StatusActive, 1, 10, 0)
		expect("override", launch.StatusActive, 1, 10, 0)
		expect("thin", launch.StatusActive, 0, 1, 0)
		if got := h.store.get("advance").StepStartedAt; !got.Equal(start.Add(5 * time.Minute)) {
			t.Fatalf("step 2 started at +%s", got.Sub(start))
		}

		// A person sets 7% by hand: the controller keeps it while it stays
		// on the step.
		h.store.Update(t.Context(), "override", func(l *launch.Launch) error { l.SamplePercent = 7; return nil })
		// "bad" starts failing: rolled back at the next tick, not after its
		// hold. "manual-fail" too, without auto_rollback.
		h.setVerdict("bad", api.VerdictFail)
		h.setVerdict("manual-fail", api.VerdictFail)
		at(5*time.Minute + 3*time.Second)
		expect("bad", launch.StatusRolledBack, 1, 10, 0)
		expect("override", launch.StatusActive, 1, 7, 0)
		if a := h.actions("bad"); !slices.Equal(a, []string{analytics.AuditStepAdvanced, analytics.AuditRolledBack}) {
			t.Fatalf("bad's audit %v", a)
		}
		expect("manual-fail", launch.StatusActive, 1, 10, 0)

		// Step 2 holds 10 minutes.
		at(15*time.Minute - time.Second)
		expect("advance", launch.StatusActive, 1, 10, 0)
		expect("override", launch.StatusActive, 1, 7, 0)
		at(15*time.Minute + time.Second)
		expect("advance", launch.StatusActive, 2, 50, 0)
		expect("override", launch.StatusActive, 2, 50, 0) // the next step's percent replaces the manual one
		// Step 3 holds 30 minutes, then auto_promote: live at 25%.
		at(44*time.Minute + 59*time.Second)
		expect("advance", launch.StatusActive, 2, 50, 0)
		at(45*time.Minute + time.Second)
		expect("advance", launch.StatusPromoting, 0, 50, 25)
		expect("override", launch.StatusActive, 2, 50, 0) // no auto_promote: waits for a person
		// The live step holds 10 minutes, then 100%: promoted.
		at(54*time.Minute + 59*time.Second)
		expect("advance", launch.StatusPromoting, 0, 50, 25)
		at(55*time.Minute + time.Second)
		expect("advance", launch.StatusPromoted, 1, 50, 100)
		if a := h.actions("advance"); !slices.Equal(a, []string{analytics.AuditStepAdvanced, analytics.AuditStepAdvanced, analytics.AuditPromoted, analytics.AuditPromoted}) {
			t.Fatalf("advance's audit %v", a)
		}
		for _, e := range h.audit {
			if e.Actor != "controller:test" || e.Reason == "" || e.Details == "" {
				t.Fatalf("audit entry %+v lacks actor, reason or details", e)
			}
		}

		// Untouched all along: the paused launch and the thin one; the
		// failing one without auto_rollback recorded its failure once.
		expect("paused", launch.StatusPaused, 0, 1, 0)
		expect("thin", launch.StatusActive, 0, 1, 0)
		expect("manual-fail", launch.StatusActive, 1, 10, 0)
		if a := h.actions("manual-fail"); !slices.Equal(a, []string{analytics.AuditStepAdvanced, analytics.AuditGateFailed}) {
			t.Fatalf("manual-fail's audit %v, want one gate_failed", a)
		}
		if a := h.actions("paused"); len(a) != 0 {
			t.Fatalf("the paused launch was changed: %v", a)
		}
		h.mu.Lock()
		asked := h.asked["paused"]
		h.mu.Unlock()
		if asked != 0 {
			t.Fatalf("the paused launch was judged %d times", asked)
		}
		// Resumed (by a person: the step starts afresh), it moves again.
		h.store.Update(t.Context(), "paused", func(l *launch.Launch) error {
			l.Status, l.StepStartedAt = launch.StatusActive, time.Now().UTC()
			return nil
		})
		at(60 * time.Minute)
		expect("paused", launch.StatusActive, 0, 1, 0)
		at(60*time.Minute + 3*time.Second)
		expect("paused", launch.StatusActive, 1, 10, 0)

		cancel()
		<-done
	})
}

// TestControllerRespectsConcurrentChange: a manual change that lands
// between the controller's decision and its write wins; the controller
// decides again on the new state at its next tick.
func TestControllerRespectsConcurrentChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		start := time.Now().UTC()
		h.store.put(launch.Launch{ID: "l", Status: launch.StatusActive, SamplePercent: 1, StepStartedAt: start,
			Ramp: &launch.Ramp{Steps: steps(1, time.Minute, 10, time.Minute)}})
		h.setVerdict("l", api.VerdictPass)
		c := h.controller()
		time.Sleep(time.Minute)
		// A person pauses the launch while the controller decides to
		// advance it.
		h.store.interfere = func(l *launch.Launch) { l.Status = launch.StatusPaused }
		c.tick(t.Context())
		l := h.store.get("l")
		if l.Status != launch.StatusPaused || l.RampStep != 0 || l.SamplePercent != 1 {
			t.Fatalf("the controller overwrote a concurrent pause: %+v", l)
		}
		if a := h.actions("l"); len(a) != 0 {
			t.Fatalf("audit %v for a change not made", a)
		}
		// Paused: left alone on later ticks.
		c.tick(t.Context())
		if l := h.store.get("l"); l.Status != launch.StatusPaused || l.RampStep != 0 {
			t.Fatalf("paused launch changed: %+v", l)
		}
		// A concurrent PATCH of another field: the decision is dropped too
		// (it was made on an older revision), and the next tick advances.
		h.store.Update(t.Context(), "l", func(l *launch.Launch) error { l.Status = launch.StatusActive; return nil })
		h.store.interfere = func(l *launch.Launch) { l.Name = "renamed" }
		c.tick(t.Context())
		if l := h.store.get("l"); l.RampStep != 0 || l.Name != "renamed" {
			t.Fatalf("after a concurrent rename: %+v", l)
		}
		c.tick(t.Context())
		if l := h.store.get("l"); l.RampStep != 1 || l.SamplePercent != 10 || l.Name != "renamed" {
			t.Fatalf("next tick: %+v", l)
		}
	})
}
