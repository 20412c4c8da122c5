package api

import (
	"testing"
)

func TestReportJSON(t *testing.T) {
	q := Quantiles{P50: 1.5, P95: 2, P99: 3}
	r := Report{AgeSeconds: 1.25, Stats: Stats{GeneratedAt: t0,
		Totals:    Totals{Compared: 10, Mismatches: 1, ShadowErrors: 2, MismatchRate: 0.1, ShadowErrorRate: 0.2, RawMismatches: 3, RawMismatchRate: 0.3, WithSecondary: 4},
		LatencyMS: Latency{Primary: q, Shadow: q, Secondary: &q},
		Routes:    []RouteStats{{Route: "/a", Method: "GET", Compared: 10, Mismatches: 1, ShadowErrors: 2, LatencyMS: Latency{Primary: q, Shadow: q}, RawMismatches: 3, WithSecondary: 4}},
		Diffs:     []DiffCount{{Path: "$.a", Kind: "value_changed", Count: 3, Noisy: 1}},
		Noise: Noise{NoiseThresholds: NoiseThresholds{MinCount: 5, MinRatio: 0.5},
			Suppressed: []SuppressedPath{{Route: "/a", Path: "$.id", Raw: 6, Noisy: 6, Ratio: 1, Reason: "noisy"}}},
		Classes: []DiffClass{{Fingerprint: "fp", Route: "/a", Diffs: []PathKind{{Path: "$.a", Kind: "value_changed"}}, Count: 1,
			FirstSeen: t0, LastSeen: t0, ShareOfRoute: 0.1, Examples: []string{"e1"}}},
		Audit: []AuditEntry{},
	}}
	checkJSON(t, r, `{"launch":null,"age_seconds":1.25,"generated_at":"2026-11-26T06:00:00Z",`+
		`"totals":{"compared":10,"mismatches":1,"shadow_errors":2,"mismatch_rate":0.1,"shadow_error_rate":0.2,"raw_mismatches":3,"raw_mismatch_rate":0.3,"with_secondary":4},`+
		`"latency_ms":{"primary":{"p50":1.5,"p95":2,"p99":3},"shadow":{"p50":1.5,"p95":2,"p99":3},"secondary":{"p50":1.5,"p95":2,"p99":3}},`+
		`"routes":[{"route":"/a","method":"GET","compared":10,"mismatches":1,"shadow_errors":2,"latency_ms":{"primary":{"p50":1.5,"p95":2,"p99":3},"shadow":{"p50":1.5,"p95":2,"p99":3}},"raw_mismatches":3,"with_secondary":4}],`+
		`"diffs":[{"path":"$.a","kind":"value_changed","count":3,"noisy":1}],`+
		`"noise":{"min_count":5,"min_ratio":0.5,"suppressed":[{"route":"/a","path":"$.id","raw":6,"noisy":6,"ratio":1,"reason":"noisy"}]},`+
		`"classes":[{"fingerprint":"fp","route":"/a","diffs":[{"path":"$.a","kind":"value_changed"}],"count":1,"first_seen":"2026-11-26T06:00:00Z","last_seen":"2026-11-26T06:00:00Z","share_of_route":0.1,"examples":["e1"]}],`+
		`"audit":[]}`)
}

func TestNoiseThresholdsSuppresses(t *testing.T) {
	th := NoiseThresholds{MinCount: 5, MinRatio: 0.5}
	for _, c := range []struct {
		raw, noisy uint64
		want       bool
	}{{10, 5, true}, {10, 4, false}, {8, 4, false}, {0, 0, false}} {
		if got := th.Suppresses(c.raw, c.noisy); got != c.want {
			t.Errorf("Suppresses(raw %d, noisy %d) = %v, want %v", c.raw, c.noisy, got, c.want)
		}
	}
}

func TestLookups(t *testing.T) {
	rep := Report{Stats: Stats{Routes: []RouteStats{{Route: "/a", Compared: 1}, {Route: "/b", Compared: 2}}}}
	if r, ok := rep.Route("/b"); !ok || r.Compared != 2 {
		t.Errorf("Route(/b) = %+v, %v", r, ok)
	}
	if _, ok := rep.Route("/c"); ok {
		t.Error("Route(/c) found a route the report lacks")
	}
	v := Verdict{Checks: []Check{{Name: CheckPairs, Value: 3}}}
	if c, ok := v.Check(CheckPairs); !ok || c.Value != 3 {
		t.Errorf("Check(pairs) = %+v, %v", c, ok)
	}
	if _, ok := v.Check(CheckMismatchRate); ok {
		t.Error("Check found a check the verdict lacks")
	}
}
