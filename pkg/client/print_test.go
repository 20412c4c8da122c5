package client

import (
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

func TestPrintReport(t *testing.T) {
	q := func(p95 float64) api.Quantiles { return api.Quantiles{P50: 1, P95: p95, P99: 9} }
	r := &api.Report{Launch: &launch.Launch{ID: "l1", Name: "checkout v2", Status: launch.StatusActive, SamplePercent: 25}}
	r.Totals = api.Totals{Compared: 200, Mismatches: 10, MismatchRate: 0.05, RawMismatches: 30, RawMismatchRate: 0.15, ShadowErrors: 2, WithSecondary: 150}
	r.LatencyMS = api.Latency{Primary: q(2), Shadow: q(10)}
	r.Routes = []api.RouteStats{{Route: "/api/search", Compared: 100, Mismatches: 5, LatencyMS: api.Latency{Primary: q(2), Shadow: q(10)}}}
	r.Diffs = []api.DiffCount{{Path: "$.total", Kind: "type_changed", Count: 7, Noisy: 1}}
	r.Noise = api.Noise{NoiseThresholds: api.NoiseThresholds{MinCount: 5, MinRatio: 0.5},
		Suppressed: []api.SuppressedPath{{Route: "/api/status", Path: "$.request_id", Raw: 40, Noisy: 40, Ratio: 1}}}
	for i := range 7 {
		r.Classes = append(r.Classes, api.DiffClass{Fingerprint: "fp" + string(rune('a'+i)), Route: "/api/orders/{id}", Count: 3,
			ShareOfRoute: 0.5, Diffs: []api.PathKind{{Path: "$.total", Kind: "type_changed"}}, Examples: []string{"e1"}})
	}
	r.Accounting = &api.Accounting{Sampled: 100, Published: 90, Dropped: map[string]uint64{"queue_full": 6, "too_large": 4, "shutdown": 0},
		Replayed: 88, Skipped: map[string]uint64{"rate_limited": 5}, DeadLettered: 3, DeadLetterReasons: map[string]uint64{"unsealable": 3},
		Compared: 80, InFlight: 2, Processes: api.AccountingProcesses{Taps: 2, Runners: 1}}
	r.Accounting.Balance()
	var b strings.Builder
	PrintReport(&b, r)
	out := b.String()
	for _, want := range []string{
		"Launch checkout v2 (l1): active, sampling 25%",
		"Compared 200 pairs: 10 mismatches (5.0%) after noise, 30 raw (15.0%); 2 shadow errors; 150 pairs with a secondary",
		"Latency ms   primary p50 1.00  p95 2.00  p99 9.00 | shadow p50 1.00  p95 10.00  p99 9.00",
		"5.0x", // the route's p95 ratio
		"$.total  type_changed  7      1",
		"/api/status  $.request_id  40     40  100%",
		"fpa         /api/orders/{id}  3      50.0%  1         $.total type_changed",
		"... 2 more",
		"Accounting   sampled 100 = compared 80 + dropped 10 (queue_full 6, too_large 4) + skipped 5 (rate_limited 5) + dead-lettered 3 (unsealable 3) + in flight 2; unaccounted 0",
		"published 90, replayed 88; counted by 2 taps, 1 runners, 0 comparators",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not show %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "fpf") {
		t.Errorf("more than %d classes listed:\n%s", maxClassesShown, out)
	}
	// A report without its launch still prints.
	PrintReport(&b, &api.Report{})
}
