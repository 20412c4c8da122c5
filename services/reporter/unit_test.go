package reporter

import (
	"errors"
	"log/slog"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

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
			Methods: []string{"GET"}, Status: launch.StatusActive}
	}
	zero, name, badURL := 0.0, "renamed", "/foo"
	empty := []string{}
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
		{"promoted is final", launch.StatusPromoted, PatchRequest{Name: &name}, nil, launch.ErrConflict},
		{"rolled back is final", launch.StatusRolledBack, PatchRequest{Name: &name}, nil, launch.ErrConflict},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := base()
			l.Status = c.status
			err := c.p.apply(l)
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
