package launch

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTransition(t *testing.T) {
	cases := []struct {
		from   Status
		action Action
		to     Status
		err    error
	}{
		{StatusActive, "pause", StatusPaused, nil},
		{StatusPaused, "resume", StatusActive, nil},
		{StatusActive, "rollback", StatusRolledBack, nil},
		{StatusPaused, "promote", StatusPromoted, nil},
		{StatusRolledBack, "resume", StatusRolledBack, ErrConflict},
		{StatusPromoted, "rollback", StatusPromoted, ErrConflict},
		{StatusRolledBack, "rollback", StatusRolledBack, nil}, // idempotent
		{StatusActive, "explode", StatusActive, ErrInvalid},
		{StatusPromoting, "pause", StatusPromoting, ErrConflict},
		{StatusPromoting, "rollback", StatusRolledBack, nil},
		{StatusPromoting, "promote", StatusPromoted, nil},
	}
	for _, c := range cases {
		to, err := Transition(c.from, c.action)
		if to != c.to || !errors.Is(err, c.err) || (c.err == nil && err != nil) {
			t.Errorf("%s --%s--> %s, %v; want %s, %v", c.from, c.action, to, err, c.to, c.err)
		}
	}
}

func TestSetLive(t *testing.T) {
	l := Launch{Status: StatusActive}
	if err := l.SetLive(10); err != nil || l.Status != StatusPromoting || !l.Live() || l.Mirrored() {
		t.Fatalf("10%%: %v %+v", err, l)
	}
	if err := l.SetLive(100); err != nil || l.Status != StatusPromoted || !l.Live() {
		t.Fatalf("100%%: %v %+v", err, l)
	}
	if err := l.SetLive(50); !errors.Is(err, ErrConflict) {
		t.Fatalf("after completion: %v", err)
	}
	for _, bad := range []float64{0, -1, 101} {
		l := Launch{Status: StatusActive}
		if err := l.SetLive(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetLive(%v): %v", bad, err)
		}
	}
}

// TestTransitions runs every action from every status on a ramped launch
// and checks the result: the status and every side effect (sample and live
// percentages, ramp step, step start), or the refusal (a *TransitionError
// matching ErrConflict, with its message as the API answers it, and the
// launch unchanged).
func TestTransitions(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	minute := Duration(time.Minute)
	// Each status as a stored launch is in it: shadow steps 1, 10, 50%
	// (on the second), live steps 25, 60%.
	fixture := func(s Status) *Launch {
		l := &Launch{Name: "checkout v2", Service: "checkout", ShadowURL: "http://shadow:8080", Methods: []string{"GET"},
			Ramp: &Ramp{Steps: []Step{{1, minute, nil}, {10, minute, nil}, {50, minute, nil}},
				LiveSteps: []Step{{25, minute, nil}, {60, minute, nil}}},
			Status: s, SamplePercent: 10, RampStep: 1, StepStartedAt: t0}
		switch s {
		case StatusPromoting:
			l.LivePercent, l.RampStep = 25, 0
		case StatusPromoted:
			l.LivePercent, l.RampStep = 100, 0
		}
		return l
	}
	twenty := 20.0
	actions := []struct {
		name   string
		action Action // the action a refusal names
		do     func(*Launch) error
	}{
		{"pause", ActionPause, func(l *Launch) error { return l.Pause() }},
		{"resume", ActionResume, func(l *Launch) error { return l.Resume(now) }},
		{"rollback", ActionRollback, func(l *Launch) error { return l.Rollback() }},
		{"promote", ActionPromote, func(l *Launch) error { return l.Promote(nil, now) }},
		{"promote with live steps", ActionPromote, func(l *Launch) error { return l.Promote([]Step{{40, minute, nil}}, now) }},
		{"advance step", ActionAdvanceStep, func(l *Launch) error { return l.AdvanceStep(now) }},
		{"advance live", ActionAdvanceLive, func(l *Launch) error { return l.AdvanceLive(now) }},
		{"patch fields", ActionPatch, func(l *Launch) error { return l.ApplyPatch(Patch{SamplePercent: &twenty}, now) }},
		{"patch ramp", ActionPatch, func(l *Launch) error {
			return l.ApplyPatch(Patch{Ramp: &Ramp{Steps: []Step{{5, minute, nil}, {15, minute, nil}}}}, now)
		}},
	}
	// started says when the step started after the action.
	const (
		kept  = iota // t0: the step goes on
		reset        // now: a new step (or the same one afresh)
	)
	type result struct {
		status       Status
		sample, live float64
		step         int
		started      int
		liveSteps    []float64 // the ramp's live steps after the action
	}
	// refused is the message of a refused transition after "launch state
	// conflict: launch is <status>; ".
	type refused string
	ok := func(status Status, sample, live float64, step, started int) result {
		return result{status, sample, live, step, started, []float64{25, 60}}
	}
	want := map[Status]map[string]any{
		StatusActive: {
			"pause":                   ok(StatusPaused, 10, 0, 1, kept),
			"resume":                  ok(StatusActive, 10, 0, 1, kept),
			"rollback":                ok(StatusRolledBack, 10, 0, 1, kept),
			"promote":                 ok(StatusPromoting, 10, 25, 0, reset),
			"promote with live steps": result{StatusPromoting, 10, 40, 0, reset, []float64{40}},
			"advance step":            ok(StatusActive, 50, 0, 2, reset),
			"advance live":            refused("only a promoting launch advances live traffic"),
			"patch fields":            ok(StatusActive, 20, 0, 1, kept),
			"patch ramp":              result{StatusActive, 5, 0, 0, reset, nil},
		},
		StatusPaused: {
			"pause":                   ok(StatusPaused, 10, 0, 1, kept),
			"resume":                  ok(StatusActive, 10, 0, 1, reset),
			"rollback":                ok(StatusRolledBack, 10, 0, 1, kept),
			"promote":                 ok(StatusPromoting, 10, 25, 0, reset),
			"promote with live steps": result{StatusPromoting, 10, 40, 0, reset, []float64{40}},
			"advance step":            refused("only an active launch advances a ramp step"),
			"advance live":            refused("only a promoting launch advances live traffic"),
			"patch fields":            ok(StatusPaused, 20, 0, 1, kept),
			"patch ramp":              result{StatusPaused, 5, 0, 0, reset, nil},
		},
		StatusPromoting: {
			"pause":                   refused("it cannot pause (roll back instead)"),
			"resume":                  refused("it cannot resume (roll back instead)"),
			"rollback":                ok(StatusRolledBack, 10, 0, 0, kept),
			"promote":                 ok(StatusPromoted, 10, 100, 0, reset),
			"promote with live steps": refused("live_steps apply only to a launch not yet promoted"),
			"advance step":            refused("only an active launch advances a ramp step"),
			"advance live":            ok(StatusPromoting, 10, 60, 1, reset),
			"patch fields":            ok(StatusPromoting, 20, 25, 0, kept),
			"patch ramp":              refused("its ramp cannot change (roll back, or promote to finish)"),
		},
		StatusPromoted: {
			"pause":                   refused("it cannot pause"),
			"resume":                  refused("it cannot resume"),
			"rollback":                refused("it cannot rollback"),
			"promote":                 ok(StatusPromoted, 10, 100, 0, kept),
			"promote with live steps": refused("live_steps apply only to a launch not yet promoted"),
			"advance step":            refused("only an active launch advances a ramp step"),
			"advance live":            refused("only a promoting launch advances live traffic"),
			"patch fields":            refused("a finished launch cannot be changed"),
			"patch ramp":              refused("a finished launch cannot be changed"),
		},
		StatusRolledBack: {
			"pause":                   refused("it cannot pause"),
			"resume":                  refused("it cannot resume"),
			"rollback":                ok(StatusRolledBack, 10, 0, 1, kept),
			"promote":                 refused("it cannot promote"),
			"promote with live steps": refused("it cannot promote"),
			"advance step":            refused("only an active launch advances a ramp step"),
			"advance live":            refused("only a promoting launch advances live traffic"),
			"patch fields":            refused("a finished launch cannot be changed"),
			"patch ramp":              refused("a finished launch cannot be changed"),
		},
	}
	statuses := []Status{StatusActive, StatusPaused, StatusPromoting, StatusPromoted, StatusRolledBack}
	pairs := 0
	for _, from := range statuses {
		for _, a := range actions {
			t.Run(string(from)+"/"+a.name, func(t *testing.T) {
				w, found := want[from][a.name]
				if !found {
					t.Fatalf("the table has no result for %s from %s", a.name, from)
				}
				l := fixture(from)
				err := a.do(l)
				switch w := w.(type) {
				case refused:
					var te *TransitionError
					msg := "launch state conflict: launch is " + string(from) + "; " + string(w)
					if !errors.Is(err, ErrConflict) || !errors.As(err, &te) || te.From != from || te.Action != a.action || err.Error() != msg {
						t.Fatalf("error %v (%#v), want a *TransitionError from %s by %s: %q", err, te, from, a.action, msg)
					}
					if !reflect.DeepEqual(l, fixture(from)) {
						t.Fatalf("a refused %s changed the launch: %+v", a.name, l)
					}
				case result:
					if err != nil {
						t.Fatalf("error %v, want %s", err, w.status)
					}
					started := t0
					if w.started == reset {
						started = now
					}
					var live []float64
					if l.Ramp != nil {
						for _, s := range l.Ramp.LiveSteps {
							live = append(live, s.Percent)
						}
					}
					if l.Status != w.status || l.SamplePercent != w.sample || l.LivePercent != w.live || l.RampStep != w.step ||
						!l.StepStartedAt.Equal(started) || !slices.Equal(live, w.liveSteps) {
						t.Fatalf("got status %s, sample %v%%, live %v%%, ramp_step %d, step_started_at %s, live steps %v;\n"+
							"want %s, %v%%, %v%%, %d, %s, %v", l.Status, l.SamplePercent, l.LivePercent, l.RampStep, l.StepStartedAt, live,
							w.status, w.sample, w.live, w.step, started, w.liveSteps)
					}
					if err := l.Normalize(); err != nil {
						t.Fatalf("the launch after %s is not valid: %v", a.name, err)
					}
				}
			})
			pairs++
		}
	}
	if n := len(statuses) * len(actions); pairs != n || len(want) != len(statuses) {
		t.Fatalf("%d pairs run, want %d", pairs, n)
	}
}

// TestTransitionEdges covers what the table's ramped fixture cannot: the
// ends of the ramps, launches without one, and where a new launch begins.
func TestTransitionEdges(t *testing.T) {
	now := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	r := Ramp{Steps: []Step{{Percent: 1}, {Percent: 10}}, LiveSteps: []Step{{Percent: 25}, {Percent: 60}}}

	last := Launch{Status: StatusPromoting, Ramp: &r, RampStep: 1, LivePercent: 60}
	if err := last.AdvanceLive(now); err != nil || last.Status != StatusPromoted || last.LivePercent != 100 || last.RampStep != 1 || !last.StepStartedAt.Equal(now) {
		t.Fatalf("after the last live step: %v %+v", err, last)
	}
	top := Launch{Status: StatusActive, Ramp: &r, RampStep: 1, SamplePercent: 10}
	if err := top.AdvanceStep(now); !errors.Is(err, ErrConflict) || top.RampStep != 1 {
		t.Fatalf("past the last shadow step: %v %+v", err, top)
	}
	plain := Launch{Status: StatusActive, SamplePercent: 5}
	if err := plain.AdvanceStep(now); !errors.Is(err, ErrConflict) {
		t.Fatalf("advance without a ramp: %v", err)
	}
	if err := plain.Promote(nil, now); err != nil || plain.Status != StatusPromoted || plain.LivePercent != 100 || plain.Ramp != nil {
		t.Fatalf("promote without live steps: %v %+v", err, plain)
	}
	paused := Launch{Status: StatusPaused}
	if err := paused.Resume(now); err != nil || paused.Status != StatusActive || !paused.StepStartedAt.IsZero() {
		t.Fatalf("resume without a ramp restarts no step: %v %+v", err, paused)
	}
	once := Launch{Name: "x", ShadowURL: "http://s", Status: StatusActive, Ramp: &Ramp{Steps: []Step{{Percent: 5}}}}
	if err := once.Promote([]Step{}, now); err != nil || once.Status != StatusPromoted || once.LivePercent != 100 || len(once.Ramp.LiveSteps) != 0 {
		t.Fatalf("promote with live_steps [] is 100%% at once: %v %+v", err, once)
	}
	bad := Launch{Name: "x", ShadowURL: "http://s", Status: StatusActive}
	err := bad.Promote([]Step{{Percent: 10}, {Percent: 5}}, now)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "ramp.live_steps[1]") {
		t.Fatalf("invalid live steps: %v", err)
	}

	for _, c := range []struct {
		name    string
		ramp    *Ramp
		percent *float64
		want    float64
		started bool
		err     error
	}{
		{"no percent, no ramp", nil, nil, 0, false, nil},
		{"percent, no ramp", nil, new(30.0), 30, false, nil},
		{"a ramp starts at its first step", &Ramp{Steps: []Step{{Percent: 2}}}, nil, 2, true, nil},
		{"the first step's percent may be given", &Ramp{Steps: []Step{{Percent: 2}}}, new(2.0), 2, true, nil},
		{"another percent is refused", &Ramp{Steps: []Step{{Percent: 2}}}, new(0.0), 0, false, ErrInvalid},
		{"live steps only", &Ramp{LiveSteps: []Step{{Percent: 20}}}, new(7.0), 7, false, nil},
	} {
		l := Launch{Ramp: c.ramp}
		err := l.Begin(c.percent, now)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("Begin %s: %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil || l.SamplePercent != c.want || l.StepStartedAt.Equal(now) != c.started {
			t.Errorf("Begin %s: %v, sample %v%% started %s; want %v%%, started %v", c.name, err, l.SamplePercent, l.StepStartedAt, c.want, c.started)
		}
	}
}
