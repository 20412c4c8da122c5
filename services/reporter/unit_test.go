package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

func TestToQuantiles(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []float64
		want api.Quantiles
	}{
		{"values", []float64{1.5, 2.25, 3}, api.Quantiles{P50: 1.5, P95: 2.25, P99: 3}},
		{"empty set is nan in ClickHouse", []float64{math.NaN(), math.NaN(), math.NaN()}, api.Quantiles{}},
		{"infinite", []float64{math.Inf(1), 2, math.Inf(-1)}, api.Quantiles{P50: 0, P95: 2, P99: 0}},
		{"short", []float64{4}, api.Quantiles{P50: 4}},
		{"nil", nil, api.Quantiles{}},
		{"float noise rounded to the microsecond", []float64{2.8999999999999995, 57.050000000000004, 0.0004}, api.Quantiles{P50: 2.9, P95: 57.05, P99: 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := toQuantiles(c.in); got != c.want {
				t.Fatalf("toQuantiles(%v) = %+v, want %+v", c.in, got, c.want)
			}
		})
	}
}

func TestNoiseThresholds(t *testing.T) {
	th := api.NoiseThresholds{MinCount: 5, MinRatio: 0.5}
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
	if !(api.NoiseThresholds{MinCount: 1, MinRatio: 0.7}).Suppresses(10, 7) {
		t.Error("7 of 10 is not at 0.7")
	}
	got := suppressed([]api.SuppressedPath{{Route: "/a", Path: "$.id", Raw: 50, Noisy: 48}, {Route: "/a", Path: "$.x", Raw: 50, Noisy: 4}}, th)
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
			var dst api.ActionRequest
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
		{fmt.Errorf("%w: no token", errUnauthenticated), 401},
		{fmt.Errorf("%w: scope read", errForbidden), 403},
	} {
		w := httptest.NewRecorder()
		s.fail(w, httptest.NewRequest("GET", "/", nil), c.err)
		if w.Code != c.code || w.Header().Get("Content-Type") != "application/json" || !strings.Contains(w.Body.String(), `"error":`) {
			t.Errorf("fail(%v) = %d %s, want %d with a JSON error", c.err, w.Code, w.Body, c.code)
		}
		if challenge := w.Header().Get("WWW-Authenticate"); (c.code == 401) != strings.HasPrefix(challenge, "Bearer") {
			t.Errorf("fail(%v): WWW-Authenticate %q", c.err, challenge)
		}
	}
	// 5xx answers say what failed, never with the internals the log gets.
	for _, c := range []struct {
		err        error
		code       int
		want, leak string
	}{
		{fmt.Errorf("read launch x: dial tcp 10.1.2.3:4222: connect: connection refused"), 503, "retry later", "10.1.2.3"},
		{fmt.Errorf("compute report: %w", context.DeadlineExceeded), 503, "timed out", "compute report"},
		{fmt.Errorf("compute report of launch x: %w: ClickHouse is not connected yet", errNotReady), 503, "not ready: ClickHouse is not connected yet", "compute report"},
		{&clickhouse.Exception{Code: 62, Message: "Syntax error: SELECT secret_column"}, 500, "internal error", "secret_column"},
	} {
		w := httptest.NewRecorder()
		s.fail(w, httptest.NewRequest("GET", "/", nil), c.err)
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.want) || strings.Contains(w.Body.String(), c.leak) {
			t.Errorf("fail(%v) = %d %s, want %d saying %q without %q", c.err, w.Code, w.Body, c.code, c.want, c.leak)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
