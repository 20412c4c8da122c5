package reporter

import (
	"errors"
	"log/slog"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

func TestToQuantiles(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []float64
		want Quantiles
	}{
		{"values", []float64{1.5, 2.25, 3}, Quantiles{1.5, 2.25, 3}},
		{"empty set is nan in ClickHouse", []float64{math.NaN(), math.NaN(), math.NaN()}, Quantiles{}},
		{"infinite", []float64{math.Inf(1), 2, math.Inf(-1)}, Quantiles{0, 2, 0}},
		{"short", []float64{4}, Quantiles{P50: 4}},
		{"nil", nil, Quantiles{}},
		{"float noise rounded to the microsecond", []float64{2.8999999999999995, 57.050000000000004, 0.0004}, Quantiles{2.9, 57.05, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := toQuantiles(c.in); got != c.want {
				t.Fatalf("toQuantiles(%v) = %+v, want %+v", c.in, got, c.want)
			}
		})
	}
}

func TestNoiseThresholds(t *testing.T) {
	th := NoiseThresholds{MinCount: 5, MinRatio: 0.5}
	for _, c := range []struct {
		raw, noisy uint64
		want       bool
	}{
		{10, 5, true},      // at both thresholds
		{10, 4, false},     // ratio 0.4
		{8, 4, false},      // ratio 0.5 but 4 noisy
		{5, 5, true},       // all noise
		{11, 5, false},     // 0.4545
		{1000, 499, false}, // just under half
		{0, 0, false},
		{50, 48, true},
	} {
		if got := th.Suppresses(c.raw, c.noisy); got != c.want {
			t.Errorf("Suppresses(raw %d, noisy %d) = %v, want %v", c.raw, c.noisy, got, c.want)
		}
	}
	// A ratio like 0.7 is not a float-exact product: 7 of 10 is 70 %.
	if !(NoiseThresholds{MinCount: 1, MinRatio: 0.7}).Suppresses(10, 7) {
		t.Error("7 of 10 is not at 0.7")
	}
	got := suppressed([]SuppressedPath{{Route: "/a", Path: "$.id", Raw: 50, Noisy: 48}, {Route: "/a", Path: "$.x", Raw: 50, Noisy: 4}}, th)
	want := "noisy in 48 of 50 differences (96%) between primary and secondary; suppressed from 5 noisy and 50%"
	if len(got) != 1 || got[0].Reason != want || got[0].Ratio != 0.96 {
		t.Fatalf("suppressed = %+v, want one with reason %q", got, want)
	}
	if set := suppressedSet(got); !slices.Equal(set, []string{"", "/a\t$.id"}) {
		t.Fatalf("set = %q", set)
	}
}

func TestPercent(t *testing.T) {
	for in, want := range map[float64]string{0.96: "96%", 0.5: "50%", 1: "100%", 0.4545: "45.5%", 0.999: "99.9%", 0.1: "10%", 0: "0%"} {
		if got := percent(in); got != want {
			t.Errorf("percent(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeBody(t *testing.T) {
	for _, c := range []struct {
		name     string
		body     string
		required bool
		code     int // 0: no error
		msg      string
	}{
		{"object", `{"reason": "x"}`, true, 0, ""},
		{"empty optional", ``, false, 0, ""},
		{"empty required", ``, true, 400, "empty"},
		{"unknown field", `{"reason": "x", "extra": 1}`, false, 400, `unknown field "extra"`},
		{"malformed", `{"reason": }`, false, 400, "invalid character"},
		{"truncated", `{"reason": "x"`, false, 400, "unexpected EOF"},
		{"trailing object", `{"reason": "x"}{}`, false, 400, "single JSON object"},
		{"trailing garbage", `{"reason": "x"} x`, false, 400, "invalid character"},
		{"trailing space ok", "{\"reason\": \"x\"}\n  ", false, 0, ""},
		{"too big", `{"reason": "` + strings.Repeat("x", maxBodyBytes) + `"}`, false, 413, "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var dst ActionRequest
			r := httptest.NewRequest("POST", "/", strings.NewReader(c.body))
			err := decodeBody(httptest.NewRecorder(), r, &dst, c.required)
			if c.code == 0 {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			var he *httpError
			if !errors.As(err, &he) || he.code != c.code || !strings.Contains(he.msg, c.msg) {
				t.Fatalf("error %v, want %d mentioning %q", err, c.code, c.msg)
			}
		})
	}
}

func TestPatchApply(t *testing.T) {
	base := func() *launch.Launch {
		return &launch.Launch{Name: "n", Service: "svc", ShadowURL: "http://s", SamplePercent: 10,
			Methods: []string{"GET"}, Status: launch.StatusActive,
			Compare: compare.Rules{ArrayKeys: map[string]string{"$.items": "id"}}}
	}
	zero, name, badURL := 0.0, "renamed", "/foo"
	empty := []string{}
	secondary, noSecondary := "http://primary-2", ""
	rules := compare.Rules{IgnorePaths: []string{"$.a"}}
	badRules := compare.Rules{IgnorePaths: []string{"a"}}
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	ramp := launch.Ramp{Steps: []launch.Step{{Percent: 2, Hold: launch.Duration(time.Minute)}, {Percent: 20}}}
	seven, maxRPS := 7.0, 50.0
	sticky, badSticky := "header:X-User-Id", "body:user"
	include, exclude := []string{"/api/**"}, []string{"/api/admin/**"}
	for _, c := range []struct {
		name   string
		status launch.Status
		p      PatchRequest
		check  func(*launch.Launch) bool
		err    error
	}{
		{"zero percent is not absent", launch.StatusActive, PatchRequest{SamplePercent: &zero},
			func(l *launch.Launch) bool { return l.SamplePercent == 0 && l.Name == "n" }, nil},
		{"name only", launch.StatusPaused, PatchRequest{Name: &name},
			func(l *launch.Launch) bool { return l.Name == "renamed" && l.SamplePercent == 10 }, nil},
		{"empty methods reset to defaults", launch.StatusActive, PatchRequest{Methods: &empty},
			func(l *launch.Launch) bool { return slices.Equal(l.Methods, launch.DefaultMethods) }, nil},
		{"revalidated", launch.StatusActive, PatchRequest{ShadowURL: &badURL}, nil, launch.ErrInvalid},
		{"secondary set", launch.StatusActive, PatchRequest{SecondaryURL: &secondary},
			func(l *launch.Launch) bool {
				return l.SecondaryURL == secondary && l.Compare.ArrayKeys["$.items"] == "id"
			}, nil},
		{"secondary removed", launch.StatusActive, PatchRequest{SecondaryURL: &noSecondary},
			func(l *launch.Launch) bool { return l.SecondaryURL == "" }, nil},
		{"secondary validated", launch.StatusActive, PatchRequest{SecondaryURL: &badURL}, nil, launch.ErrInvalid},
		{"rules replaced", launch.StatusActive, PatchRequest{Compare: &rules},
			func(l *launch.Launch) bool {
				return slices.Equal(l.Compare.IgnorePaths, []string{"$.a"}) && l.Compare.ArrayKeys == nil
			}, nil},
		{"rules validated", launch.StatusActive, PatchRequest{Compare: &badRules}, nil, compare.ErrInvalidRules},
		{"ramp restarts at its first step", launch.StatusActive, PatchRequest{Ramp: &ramp},
			func(l *launch.Launch) bool {
				return l.Ramp != nil && l.SamplePercent == 2 && l.RampStep == 0 && l.StepStartedAt.Equal(now)
			}, nil},
		{"manual percent with a ramp wins", launch.StatusActive, PatchRequest{Ramp: &ramp, SamplePercent: &seven},
			func(l *launch.Launch) bool { return l.SamplePercent == 7 && l.Ramp != nil }, nil},
		{"empty ramp removes it", launch.StatusActive, PatchRequest{Ramp: &launch.Ramp{}},
			func(l *launch.Launch) bool { return l.Ramp == nil && l.StepStartedAt.IsZero() && l.SamplePercent == 10 }, nil},
		{"ramp validated", launch.StatusActive, PatchRequest{Ramp: &launch.Ramp{Steps: []launch.Step{{Percent: 20}, {Percent: 10}}}}, nil, launch.ErrInvalid},
		{"no ramp change while promoting", launch.StatusPromoting, PatchRequest{Ramp: &ramp}, nil, launch.ErrConflict},
		{"gates replaced", launch.StatusActive, PatchRequest{Gates: &launch.Gates{MinPairs: 5}},
			func(l *launch.Launch) bool { return l.Gates == launch.Gates{MinPairs: 5} }, nil},
		{"gates validated", launch.StatusActive, PatchRequest{Gates: &launch.Gates{Alpha: 2}}, nil, launch.ErrInvalid},
		{"sampling fields", launch.StatusActive, PatchRequest{StickyKey: &sticky, IncludePaths: &include, ExcludePaths: &exclude, MaxRPS: &maxRPS},
			func(l *launch.Launch) bool {
				return l.StickyKey == sticky && slices.Equal(l.IncludePaths, include) && slices.Equal(l.ExcludePaths, exclude) && l.MaxRPS == 50
			}, nil},
		{"sticky key validated", launch.StatusActive, PatchRequest{StickyKey: &badSticky}, nil, launch.ErrInvalid},
		{"promoted is final", launch.StatusPromoted, PatchRequest{Name: &name}, nil, launch.ErrConflict},
		{"rolled back is final", launch.StatusRolledBack, PatchRequest{Name: &name}, nil, launch.ErrConflict},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := base()
			l.Status = c.status
			err := c.p.apply(l, now)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("error %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || !c.check(l) {
				t.Fatalf("apply: %v, launch %+v", err, l)
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	s := &Service{log: discardLogger()}
	for _, c := range []struct {
		err  error
		code int
	}{
		{launch.ErrInvalid, 422},
		{launch.ErrNotFound, 404},
		{launch.ErrConflict, 409},
		{&httpError{413, "big"}, 413},
		{errNotReady, 503},
		{errors.New("nats: timeout"), 503},
	} {
		w := httptest.NewRecorder()
		s.fail(w, httptest.NewRequest("GET", "/", nil), c.err)
		if w.Code != c.code || w.Header().Get("Content-Type") != "application/json" || !strings.Contains(w.Body.String(), `"error":`) {
			t.Errorf("fail(%v) = %d %s, want %d with a JSON error", c.err, w.Code, w.Body, c.code)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
