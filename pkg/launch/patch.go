package launch

import (
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
)

// Patch is a change of some of a launch's fields and rules, as PATCH
// /v1/launches/{id} carries it: a nil field is left as it is (absent or
// null in JSON), a set one is the new value, zero values included ("" and
// 0 are values, not "absent").
type Patch struct {
	Name      *string `json:"name,omitempty"`
	ShadowURL *string `json:"shadow_url,omitempty"`
	// SecondaryURL "" removes the secondary.
	SecondaryURL  *string   `json:"secondary_url,omitempty"`
	SamplePercent *float64  `json:"sample_percent,omitempty"`
	Methods       *[]string `json:"methods,omitempty"`
	// Compare replaces the launch's rules as a whole ({} restores the
	// defaults): merging rule lists field by field would leave no way to
	// remove one entry.
	Compare      *compare.Rules `json:"compare,omitempty"`
	StickyKey    *string        `json:"sticky_key,omitempty"`
	IncludePaths *[]string      `json:"include_paths,omitempty"`
	ExcludePaths *[]string      `json:"exclude_paths,omitempty"`
	MaxRPS       *float64       `json:"max_rps,omitempty"`
	// Ramp replaces the ramp and restarts it at its first step; a ramp with
	// neither steps nor live_steps ({}) removes it.
	Ramp *Ramp `json:"ramp,omitempty"`
	// Gates replace the gates as a whole ({} restores the defaults).
	Gates *Gates `json:"gates,omitempty"`
	// Capture replaces the capture policy as a whole ({} removes it).
	Capture *Capture `json:"capture,omitempty"`
}

// Empty reports whether the patch changes nothing.
func (p *Patch) Empty() bool { return *p == Patch{} }

// ApplyPatch changes the launch as p says and validates the result
// (ErrInvalid naming the field). A finished launch cannot be changed, and
// a promoting one cannot change its ramp (*TransitionError).
//
// A new ramp restarts at its first step (RampStep 0, StepStartedAt now,
// SamplePercent the first step's); an empty one removes the ramp and
// leaves the percentage. A SamplePercent in the same patch wins over the
// ramp's first step.
func (l *Launch) ApplyPatch(p Patch, now time.Time) error {
	if l.Status.Final() {
		return refuse(l.Status, ActionPatch, "a finished launch cannot be changed")
	}
	if p.Name != nil {
		l.Name = *p.Name
	}
	if p.ShadowURL != nil {
		l.ShadowURL = *p.ShadowURL
	}
	if p.SecondaryURL != nil {
		l.SecondaryURL = *p.SecondaryURL
	}
	if p.Compare != nil {
		l.Compare = *p.Compare
	}
	if p.StickyKey != nil {
		l.StickyKey = *p.StickyKey
	}
	if p.IncludePaths != nil {
		l.IncludePaths = append([]string(nil), *p.IncludePaths...)
	}
	if p.ExcludePaths != nil {
		l.ExcludePaths = append([]string(nil), *p.ExcludePaths...)
	}
	if p.MaxRPS != nil {
		l.MaxRPS = *p.MaxRPS
	}
	if p.Gates != nil {
		l.Gates = *p.Gates
	}
	if p.Capture != nil {
		c, err := p.Capture.keepRedacted(l.Capture)
		if err != nil {
			return err
		}
		l.Capture = c
	}
	if p.Ramp != nil {
		if l.Status == StatusPromoting {
			return refuse(l.Status, ActionPatch, "its ramp cannot change (roll back, or promote to finish)")
		}
		l.RampStep = 0
		l.StepStartedAt = time.Time{}
		l.Ramp = nil
		if len(p.Ramp.Steps) > 0 || len(p.Ramp.LiveSteps) > 0 {
			r := *p.Ramp
			l.Ramp = &r
			l.StepStartedAt = now
			if len(r.Steps) > 0 {
				l.SamplePercent = r.Steps[0].Percent
			}
		}
	}
	// Set after the ramp: a manual percentage in the same patch wins.
	if p.SamplePercent != nil {
		l.SamplePercent = *p.SamplePercent
	}
	if p.Methods != nil {
		l.Methods = append([]string(nil), *p.Methods...)
	}
	return l.Normalize()
}
