package launch

import (
	"fmt"
	"time"
)

// Action is a change of a launch's state: what an operator asks through the
// API (pause, resume, promote, rollback, a PATCH) or what the reporter's
// controller decides (advance a step, advance live traffic, roll back).
type Action string

// The actions, as the API names them in its paths (POST
// /v1/launches/{id}/<action>) and its logs.
const (
	ActionPause    Action = "pause"
	ActionResume   Action = "resume"
	ActionPromote  Action = "promote"
	ActionRollback Action = "rollback"
	// ActionPatch changes fields and rules (PATCH /v1/launches/{id}).
	ActionPatch Action = "patch"
	// ActionAdvanceStep moves a ramped launch to its next shadow step.
	ActionAdvanceStep Action = "advance_step"
	// ActionAdvanceLive moves a promoting launch to its next live step, or
	// to 100% after the last.
	ActionAdvanceLive Action = "advance_live"
)

// TransitionError is a refused transition: the action is not allowed from
// the launch's status. It wraps ErrConflict (the API answers 409), and
// errors.As gives the status and the action.
type TransitionError struct {
	From   Status
	Action Action
	// Why ends the message: what is not allowed and, where there is one,
	// the way out.
	Why string
}

// Error reads "launch state conflict: launch is <from>; <why>".
func (e *TransitionError) Error() string {
	return fmt.Sprintf("%v: launch is %s; %s", ErrConflict, e.From, e.Why)
}

// Unwrap makes a TransitionError match ErrConflict.
func (e *TransitionError) Unwrap() error { return ErrConflict }

func refuse(from Status, a Action, format string, args ...any) error {
	return &TransitionError{From: from, Action: a, Why: fmt.Sprintf(format, args...)}
}

// Final reports whether a launch in this status has finished: promoted or
// rolled back. A finished launch cannot change any more.
func (s Status) Final() bool { return s == StatusPromoted || s == StatusRolledBack }

// Transition returns the status an action leads to from the current one
// (pause, resume, promote or rollback), or a *TransitionError (ErrConflict).
// Promoted and rolled-back launches are final; repeating an action that
// leads to the current status is allowed. An unknown action is ErrInvalid.
func Transition(from Status, action Action) (Status, error) {
	if from == StatusPromoting && (action == ActionPause || action == ActionResume) {
		// Live traffic is being served by the new version: the way back is
		// a rollback, not a pause.
		return from, refuse(from, action, "it cannot %s (roll back instead)", action)
	}
	var to Status
	switch action {
	case ActionPause:
		to = StatusPaused
	case ActionResume:
		to = StatusActive
	case ActionPromote:
		to = StatusPromoted
	case ActionRollback:
		to = StatusRolledBack
	default:
		return from, fmt.Errorf("%w: unknown action %q", ErrInvalid, action)
	}
	if from.Final() && to != from {
		return from, refuse(from, action, "it cannot %s", action)
	}
	return to, nil
}

// Begin sets where a new launch starts, before Store.Create validates and
// stores it. samplePercent is the percentage asked for, nil when none was:
// without a ramp (or with live steps only) it is the launch's (0 when nil);
// a ramped launch starts at its first step's percentage, with the step's
// hold running from now, and a different samplePercent is ErrInvalid.
func (l *Launch) Begin(samplePercent *float64, now time.Time) error {
	if samplePercent != nil {
		l.SamplePercent = *samplePercent
	}
	if l.Ramp == nil || len(l.Ramp.Steps) == 0 {
		return nil
	}
	first := l.Ramp.Steps[0].Percent
	if samplePercent != nil && *samplePercent != first {
		return fmt.Errorf("%w: sample_percent %v differs from ramp.steps[0].percent %v: a ramped launch starts at its first step (omit sample_percent)",
			ErrInvalid, *samplePercent, first)
	}
	l.SamplePercent = first
	l.StepStartedAt = now
	return nil
}

// Pause stops mirroring: active or paused → paused. A promoting launch
// cannot pause (its way back is a rollback), a finished one not at all.
func (l *Launch) Pause() error {
	_, err := l.move(ActionPause)
	return err
}

// Resume mirrors again: paused or active → active. Resuming a paused
// ramped launch restarts its step (StepStartedAt = now): nothing was
// mirrored while paused, so the step's hold and its verdict window start
// afresh. Refused like Pause.
func (l *Launch) Resume(now time.Time) error {
	from, err := l.move(ActionResume)
	if err == nil && from == StatusPaused && l.Ramp != nil {
		l.StepStartedAt = now
	}
	return err
}

// Rollback sends all live traffic back to the primary (LivePercent 0) and
// stops mirroring: any status but promoted → rolled_back.
func (l *Launch) Rollback() error {
	if _, err := l.move(ActionRollback); err != nil {
		return err
	}
	l.LivePercent = 0
	return nil
}

// move makes the status change Transition allows for a pause, resume or
// rollback, and returns the status the launch left.
func (l *Launch) move(a Action) (Status, error) {
	from := l.Status
	to, err := Transition(from, a)
	if err != nil {
		return from, err
	}
	l.Status = to
	return from, nil
}

// Promote makes the new version serve live traffic.
//
// From active or paused: at the first live step's percentage (promoting,
// RampStep 0 then counting live steps, StepStartedAt now; the controller
// steps it up with AdvanceLive), or at 100% at once without live steps
// (promoted). liveSteps nil means the ramp's live steps; non-nil (even
// empty) replaces ramp.live_steps, and the result is validated (ErrInvalid
// naming ramp.live_steps[i]).
//
// From promoting it completes the promotion (100% now); from promoted it
// changes nothing. liveSteps on either, and any promote of a rolled-back
// launch, is a *TransitionError.
func (l *Launch) Promote(liveSteps []Step, now time.Time) error {
	explicit := liveSteps != nil
	switch l.Status {
	case StatusRolledBack:
		return refuse(l.Status, ActionPromote, "it cannot promote")
	case StatusPromoted, StatusPromoting:
		if explicit {
			return refuse(l.Status, ActionPromote, "live_steps apply only to a launch not yet promoted")
		}
		if l.Status == StatusPromoting {
			return l.goLive(100, l.RampStep, now)
		}
		return nil // promoting a promoted launch changes nothing
	}
	if explicit {
		r := Ramp{}
		if l.Ramp != nil {
			r = *l.Ramp
		}
		r.LiveSteps = liveSteps
		l.Ramp = &r
		if len(r.Steps) == 0 && len(r.LiveSteps) == 0 {
			l.Ramp = nil
		}
	} else if l.Ramp != nil {
		liveSteps = l.Ramp.LiveSteps
	}
	to := 100.0
	if len(liveSteps) > 0 {
		to = liveSteps[0].Percent
	}
	if err := l.goLive(to, 0, now); err != nil {
		return err
	}
	if explicit {
		return l.Normalize()
	}
	return nil
}

// AdvanceStep moves an active ramped launch to its next shadow step: the
// step's percentage is sampled from now. Refused (*TransitionError) in any
// other status, without a ramp, or on the last step (after it the launch
// is promoted, not advanced).
func (l *Launch) AdvanceStep(now time.Time) error {
	if l.Status != StatusActive {
		return refuse(l.Status, ActionAdvanceStep, "only an active launch advances a ramp step")
	}
	if l.Ramp == nil || l.RampStep+1 >= len(l.Ramp.Steps) {
		return refuse(l.Status, ActionAdvanceStep, "ramp_step %d is not followed by another ramp step", l.RampStep)
	}
	l.RampStep++
	l.SamplePercent = l.Ramp.Steps[l.RampStep].Percent
	l.StepStartedAt = now
	return nil
}

// AdvanceLive moves a promoting launch to its next live step, or after the
// last one to 100% (promoted); the new share of live traffic is judged from
// now. Refused (*TransitionError) in any other status.
func (l *Launch) AdvanceLive(now time.Time) error {
	if l.Status != StatusPromoting {
		return refuse(l.Status, ActionAdvanceLive, "only a promoting launch advances live traffic")
	}
	var steps []Step
	if l.Ramp != nil {
		steps = l.Ramp.LiveSteps
	}
	if l.RampStep+1 < len(steps) {
		return l.goLive(steps[l.RampStep+1].Percent, l.RampStep+1, now)
	}
	return l.goLive(100, l.RampStep, now)
}

// goLive sets the live share to percent at ramp step (of the live steps)
// step, from now.
func (l *Launch) goLive(percent float64, step int, now time.Time) error {
	if err := l.SetLive(percent); err != nil {
		return err
	}
	l.RampStep = step
	l.StepStartedAt = now
	return nil
}

// SetLive sets the share of live traffic the new version serves: the launch
// is promoting below 100% and promoted (complete) at 100%. A percentage
// outside (0, 100] is ErrInvalid; a finished launch refuses
// (*TransitionError).
func (l *Launch) SetLive(percent float64) error {
	if percent <= 0 || percent > 100 || percent != percent {
		return fmt.Errorf("%w: live_percent %v must be above 0 and at most 100", ErrInvalid, percent)
	}
	if l.Status.Final() {
		return refuse(l.Status, ActionPromote, "it cannot be promoted")
	}
	l.LivePercent = percent
	l.Status = StatusPromoting
	if percent == 100 {
		l.Status = StatusPromoted
	}
	return nil
}
