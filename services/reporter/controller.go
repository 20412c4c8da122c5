package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// Decision is what the controller does with a launch at one tick.
type Decision struct {
	// Action is an analytics.Audit* action (step_advanced, promoted,
	// live_step, rolled_back, gate_failed), or "" to leave the launch as it
	// is.
	Action string
	// Reason says why, for the audit log and the logs.
	Reason string
}

// Stays reports whether the decision changes nothing.
func (d Decision) Stays() bool { return d.Action == "" || d.Action == analytics.AuditGateFailed }

// driven reports whether the controller has anything to do with a launch:
// a ramped active launch (judged on compared pairs), or a promoting one
// with live steps (judged on live traffic). Paused and finished launches
// are left alone.
func driven(l *launch.Launch) bool {
	return (l.Status == launch.StatusActive && l.Ramp != nil && len(l.Ramp.Steps) > 0) ||
		(l.Status == launch.StatusPromoting && l.Ramp != nil && len(l.Ramp.LiveSteps) > 0)
}

// Decide is the controller's decision for a launch as read now, given its
// verdict (computed for every driven launch). It is a pure function of its
// inputs.
//
//   - a failing gate rolls back with auto_rollback (and is recorded as
//     gate_failed without); an inconclusive verdict stays; a pass advances
//     once the step's hold has passed since StepStartedAt.
//   - active with a ramp: advancing moves to the next shadow step, or after
//     the last one promotes with auto_promote (at the first live step, or
//     at 100%).
//   - promoting (judged on live traffic): advancing moves live traffic to
//     the next live step, or after the last one to 100% (promoted).
//   - anything else (paused, promoted, rolled back, no ramp): stay.
func Decide(l *launch.Launch, v *api.Verdict, now time.Time) Decision {
	if !driven(l) {
		return Decision{}
	}
	step, ok := l.CurrentStep()
	if !ok {
		return Decision{Reason: fmt.Sprintf("ramp_step %d is not a step of the ramp", l.RampStep)}
	}
	held := now.Sub(l.StepStartedAt)
	left := step.Hold.D() - held
	if v == nil {
		return Decision{Reason: "no verdict"}
	}
	steps := l.Ramp.Steps
	where := fmt.Sprintf("step %d of %d at %v%%", l.RampStep+1, len(steps), step.Percent)
	if l.Status == launch.StatusPromoting {
		steps = l.Ramp.LiveSteps
		where = fmt.Sprintf("live step %d of %d at %v%%", l.RampStep+1, len(steps), step.Percent)
	}
	switch v.Verdict {
	case api.VerdictFail:
		why := strings.Join(v.Reasons, "; ")
		if l.Ramp.AutoRollback {
			return Decision{Action: analytics.AuditRolledBack, Reason: fmt.Sprintf("gate failed at %s: %s", where, why)}
		}
		return Decision{Action: analytics.AuditGateFailed, Reason: fmt.Sprintf("gate failed at %s (auto_rollback is off: waiting for a person): %s", where, why)}
	case api.VerdictPass:
	default:
		return Decision{Reason: fmt.Sprintf("inconclusive at %s: %s", where, strings.Join(v.Reasons, "; "))}
	}
	if l.Status == launch.StatusPromoting {
		if left > 0 {
			return Decision{Reason: fmt.Sprintf("live gates pass at %s; %s of its hold left", where, roundDur(left))}
		}
		passed := fmt.Sprintf("live gates passed on %d requests per version over %s at %s", v.Window.Pairs, roundDur(held), where)
		if l.RampStep+1 < len(steps) {
			next := steps[l.RampStep+1]
			action := analytics.AuditLiveStep
			if next.Percent == 100 {
				action = analytics.AuditPromoted
			}
			return Decision{Action: action, Reason: fmt.Sprintf("%s; live traffic to %v%%", passed, next.Percent)}
		}
		return Decision{Action: analytics.AuditPromoted, Reason: passed + "; live traffic to 100%"}
	}
	if left > 0 {
		return Decision{Reason: fmt.Sprintf("gates pass at %s; %s of its hold left", where, roundDur(left))}
	}
	passed := fmt.Sprintf("gates passed on %d pairs over %s at %s", v.Window.Pairs, roundDur(held), where)
	if l.RampStep+1 < len(steps) {
		return Decision{Action: analytics.AuditStepAdvanced, Reason: fmt.Sprintf("%s; sample to %v%%", passed, steps[l.RampStep+1].Percent)}
	}
	if !l.Ramp.AutoPromote {
		return Decision{Reason: passed + "; the ramp is complete and auto_promote is off: promote by hand"}
	}
	to := 100.0
	if len(l.Ramp.LiveSteps) > 0 {
		to = l.Ramp.LiveSteps[0].Percent
	}
	return Decision{Action: analytics.AuditPromoted, Reason: fmt.Sprintf("%s; the ramp is complete: promoting, live traffic to %v%%", passed, to)}
}

func roundDur(d time.Duration) launch.Duration {
	if d > time.Second {
		d = d.Round(100 * time.Millisecond)
	}
	return launch.Duration(d)
}

// Apply makes a decision's change to l (the launch as read before a write)
// through the launch's transitions: the next shadow step, promotion (at
// the first live step or at once), the next live step or completion, or a
// rollback.
func Apply(l *launch.Launch, d Decision, now time.Time) error {
	switch d.Action {
	case analytics.AuditStepAdvanced:
		return l.AdvanceStep(now)
	case analytics.AuditPromoted, analytics.AuditLiveStep:
		if l.Status == launch.StatusPromoting {
			return l.AdvanceLive(now)
		}
		return l.Promote(nil, now)
	case analytics.AuditRolledBack:
		return l.Rollback()
	}
	return fmt.Errorf("decision %q changes nothing", d.Action)
}

// launchStore is what the controller needs of launch.Store.
type launchStore interface {
	List(ctx context.Context) ([]*launch.Launch, error)
	Update(ctx context.Context, id string, change func(*launch.Launch) error) (*launch.Launch, error)
}

// leaser hands out per-launch leases: only the holder drives a launch.
type leaser interface {
	// Hold acquires or renews the lease of a launch and reports whether
	// this process holds it.
	Hold(ctx context.Context, id string) (bool, error)
	// Release gives a lease up (best effort).
	Release(ctx context.Context, id string)
	// Held lists the launches whose lease this process holds.
	Held() []string
}

// errStale aborts a controller write when the launch changed since the
// decision was made (a manual PATCH, pause, promote...): the next tick
// decides again on the new state.
var errStale = errors.New("launch changed since the decision")

// controller drives ramped launches: every tick it lists the launches,
// holds the lease of each one it should drive, and decides.
type controller struct {
	actor    string
	store    launchStore
	leases   leaser
	verdict  func(context.Context, *launch.Launch) (*api.Verdict, error)
	audit    func(api.AuditEntry)
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger
	// observe counts a decision (may be nil).
	observe func(decision string)

	mu sync.Mutex
	// noted remembers, per launch, the step a gate_failed was recorded
	// for, so a failing gate is recorded once per step, not every tick.
	noted map[string]string
}

// Run ticks until ctx ends, then gives up its leases so another reporter
// takes over at once instead of after the TTL.
func (c *controller) Run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		c.tick(ctx)
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			for _, id := range c.leases.Held() {
				c.leases.Release(rctx, id)
			}
			cancel()
			return
		case <-t.C:
		}
	}
}

func (c *controller) tick(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, c.timeout)
	ls, err := c.store.List(lctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("controller: list launches", "err", err)
		}
		return
	}
	want := map[string]bool{}
	for _, l := range ls {
		if driven(l) {
			want[l.ID] = true
		}
	}
	for _, id := range c.leases.Held() {
		if !want[id] {
			c.leases.Release(ctx, id)
		}
	}
	for _, l := range ls {
		if !want[l.ID] || ctx.Err() != nil {
			continue
		}
		held, err := c.leases.Hold(ctx, l.ID)
		if err != nil {
			c.log.Warn("controller: lease", "launch_id", l.ID, "err", err)
			continue
		}
		if held {
			c.drive(ctx, l)
		}
	}
}

// drive decides for one launch and applies the decision with optimistic
// concurrency: the write happens only if the launch is still at the
// revision the decision was made on.
func (c *controller) drive(ctx context.Context, l *launch.Launch) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, err := c.verdict(ctx, l)
	if err != nil {
		c.log.Warn("controller: verdict", "launch_id", l.ID, "err", err)
		return
	}
	now := time.Now().UTC()
	d := Decide(l, v, now)
	details := map[string]any{"ramp_step": l.RampStep, "revision": l.Revision}
	if v != nil {
		details["verdict"] = v.Verdict
		details["checks"] = v.Checks
		details["window"] = v.Window
	}
	switch d.Action {
	case "":
		c.count("stay")
		c.log.Debug("controller: stay", "launch_id", l.ID, "reason", d.Reason)
		return
	case analytics.AuditGateFailed:
		c.count(d.Action)
		key := fmt.Sprintf("%d@%d", l.RampStep, l.StepStartedAt.UnixNano())
		c.mu.Lock()
		seen := c.noted[l.ID] == key
		c.noted[l.ID] = key
		c.mu.Unlock()
		if !seen {
			c.log.Warn("controller: gate failed; auto_rollback is off", "launch_id", l.ID, "reason", d.Reason)
			e := newAuditEntry(l, d.Action, l.Status, c.actor, d.Reason, details)
			e.TS = now
			c.audit(e)
		}
		return
	}
	from := l.Status
	updated, err := c.store.Update(ctx, l.ID, func(cur *launch.Launch) error {
		if cur.Revision != l.Revision {
			return errStale
		}
		return Apply(cur, d, now)
	})
	if errors.Is(err, errStale) {
		c.count("stale")
		c.log.Info("controller: the launch changed since the decision; deciding again next tick", "launch_id", l.ID, "decision", d.Action)
		return
	}
	if err != nil {
		c.log.Warn("controller: apply decision", "launch_id", l.ID, "decision", d.Action, "err", err)
		return
	}
	c.count(d.Action)
	c.log.Info("controller: launch changed", "launch_id", l.ID, "decision", d.Action, "from", from, "to", updated.Status,
		"sample_percent", updated.SamplePercent, "live_percent", updated.LivePercent, "ramp_step", updated.RampStep, "reason", d.Reason)
	c.audit(newAuditEntry(updated, d.Action, from, c.actor, d.Reason, details))
}

func (c *controller) count(decision string) {
	if c.observe != nil {
		c.observe(decision)
	}
}
