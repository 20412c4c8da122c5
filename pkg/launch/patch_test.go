package launch

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
)

func TestApplyPatch(t *testing.T) {
	base := func() *Launch {
		return &Launch{Name: "n", Service: "svc", ShadowURL: "http://s", SamplePercent: 10,
			Methods: []string{"GET"}, Status: StatusActive,
			Compare: compare.Rules{ArrayKeys: map[string]string{"$.items": "id"}}}
	}
	zero, name, badURL := 0.0, "renamed", "/foo"
	empty := []string{}
	secondary, noSecondary := "http://primary-2", ""
	rules := compare.Rules{IgnorePaths: []string{"$.a"}}
	badRules := compare.Rules{IgnorePaths: []string{"a"}}
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	ramp := Ramp{Steps: []Step{{Percent: 2, Hold: Duration(time.Minute)}, {Percent: 20}}}
	seven, maxRPS := 7.0, 50.0
	sticky, badSticky := "header:X-User-Id", "body:user"
	include, exclude := []string{"/api/**"}, []string{"/api/admin/**"}
	for _, c := range []struct {
		name   string
		status Status
		p      Patch
		check  func(*Launch) bool
		err    error
	}{
		{"zero percent is not absent", StatusActive, Patch{SamplePercent: &zero},
			func(l *Launch) bool { return l.SamplePercent == 0 && l.Name == "n" }, nil},
		{"name only", StatusPaused, Patch{Name: &name},
			func(l *Launch) bool { return l.Name == "renamed" && l.SamplePercent == 10 }, nil},
		{"empty methods reset to defaults", StatusActive, Patch{Methods: &empty},
			func(l *Launch) bool { return slices.Equal(l.Methods, DefaultMethods) }, nil},
		{"revalidated", StatusActive, Patch{ShadowURL: &badURL}, nil, ErrInvalid},
		{"secondary set", StatusActive, Patch{SecondaryURL: &secondary},
			func(l *Launch) bool {
				return l.SecondaryURL == secondary && l.Compare.ArrayKeys["$.items"] == "id"
			}, nil},
		{"secondary removed", StatusActive, Patch{SecondaryURL: &noSecondary},
			func(l *Launch) bool { return l.SecondaryURL == "" }, nil},
		{"secondary validated", StatusActive, Patch{SecondaryURL: &badURL}, nil, ErrInvalid},
		{"rules replaced", StatusActive, Patch{Compare: &rules},
			func(l *Launch) bool {
				return slices.Equal(l.Compare.IgnorePaths, []string{"$.a"}) && l.Compare.ArrayKeys == nil
			}, nil},
		{"rules validated", StatusActive, Patch{Compare: &badRules}, nil, compare.ErrInvalidRules},
		{"ramp restarts at its first step", StatusActive, Patch{Ramp: &ramp},
			func(l *Launch) bool {
				return l.Ramp != nil && l.SamplePercent == 2 && l.RampStep == 0 && l.StepStartedAt.Equal(now)
			}, nil},
		{"manual percent with a ramp wins", StatusActive, Patch{Ramp: &ramp, SamplePercent: &seven},
			func(l *Launch) bool { return l.SamplePercent == 7 && l.Ramp != nil }, nil},
		{"empty ramp removes it", StatusActive, Patch{Ramp: &Ramp{}},
			func(l *Launch) bool { return l.Ramp == nil && l.StepStartedAt.IsZero() && l.SamplePercent == 10 }, nil},
		{"ramp validated", StatusActive, Patch{Ramp: &Ramp{Steps: []Step{{Percent: 20}, {Percent: 10}}}}, nil, ErrInvalid},
		{"no ramp change while promoting", StatusPromoting, Patch{Ramp: &ramp}, nil, ErrConflict},
		{"gates replaced", StatusActive, Patch{Gates: &Gates{MinPairs: 5}},
			func(l *Launch) bool { return l.Gates == Gates{MinPairs: 5} }, nil},
		{"gates validated", StatusActive, Patch{Gates: &Gates{Alpha: 2}}, nil, ErrInvalid},
		{"sampling fields", StatusActive, Patch{StickyKey: &sticky, IncludePaths: &include, ExcludePaths: &exclude, MaxRPS: &maxRPS},
			func(l *Launch) bool {
				return l.StickyKey == sticky && slices.Equal(l.IncludePaths, include) && slices.Equal(l.ExcludePaths, exclude) && l.MaxRPS == 50
			}, nil},
		{"sticky key validated", StatusActive, Patch{StickyKey: &badSticky}, nil, ErrInvalid},
		{"promoted is final", StatusPromoted, Patch{Name: &name}, nil, ErrConflict},
		{"rolled back is final", StatusRolledBack, Patch{Name: &name}, nil, ErrConflict},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := base()
			l.Status = c.status
			err := l.ApplyPatch(c.p, now)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("error %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || !c.check(l) {
				t.Fatalf("ApplyPatch: %v, launch %+v", err, l)
			}
		})
	}
}
