package client

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

func TestPrintReport(t *testing.T) {
	q := func(p95 float64) api.Quantiles { return api.Quantiles{P50: 1, P95: p95, P99: 9} }
	r := &api.Report{Launch: &launch.Launch{ID: "l1", Name: "checkout v2", Status: launch.StatusActive, SamplePercent: 25}}
	r.Totals = api.Totals{Compared: 200, Mismatches: 10, MismatchRate: 0.05, RawMismatches: 30, RawMismatchRate: 0.15, ShadowErrors: 2, WithSecondary: 150}
	sec := q(3)
	r.LatencyMS = api.Latency{Primary: q(2), Shadow: q(10), Secondary: &sec}
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
		"Latency ms   primary p50 1.00  p95 2.00  p99 9.00 | shadow p50 1.00  p95 10.00  p99 9.00 | secondary p50 1.00  p95 3.00  p99 9.00\n",
		"5.0x", // the route's p95 ratio
		"$.total  type_changed  7      1",
		"/api/status  $.request_id  40     40  100%",
		"Diff classes: 7 (examples: GET /v1/launches/l1/examples/<class>)",
		"fpa  /api/orders/{id}  3 pairs, 50.0% of the route, 1 examples\n  $.total  type_changed",
		"fpg  /api/orders/{id}", // every class, not only the first five
		"Accounting   sampled 100 = compared 80 + dropped 10 (queue_full 6, too_large 4) + skipped 5 (rate_limited 5) + dead-lettered 3 (unsealable 3) + in flight 2; unaccounted 0",
		"published 90, replayed 88; counted by 2 taps, 1 runners, 0 comparators",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not show %q:\n%s", want, out)
		}
	}
	// A report without its launch still prints.
	PrintReport(&b, &api.Report{})
}

// Each difference of a class shows one before → after from the class's
// example: body values (JSON and JSON sequences) with their shapes for a
// format change, headers, status, absent sides, text bodies by size.
func TestPrintReportExamples(t *testing.T) {
	gen := compare.FormatChangedPath("$.client", compare.StringShape("10.0.0.1:80"), compare.StringShape("10.0.0.1"))
	r := &api.Report{Launch: &launch.Launch{ID: "l1"}, Stats: api.Stats{Classes: []api.DiffClass{
		{Fingerprint: "fp1", Route: "/whoami", Count: 4, ShareOfRoute: 1, Examples: []string{"e1"}, Diffs: []api.PathKind{
			{Path: gen, Kind: compare.KindFormatChanged}, {Path: "$.items[*].price", Kind: compare.KindValueChanged},
			{Path: "$.gone", Kind: compare.KindMissingField}, {Path: "header.X-Content-Type-Options", Kind: compare.KindHeader},
			{Path: "status", Kind: compare.KindStatus}, {Path: "$.nothere", Kind: compare.KindExtraField}}},
		{Fingerprint: "fp2", Route: "/events", Count: 1, Examples: []string{"e2"}, Diffs: []api.PathKind{{Path: "$[*].v", Kind: compare.KindValueChanged}}},
		{Fingerprint: "fp3", Route: "/page", Count: 1, Examples: []string{"e3"}, Diffs: []api.PathKind{{Path: "$", Kind: compare.KindBodyText}}},
		{Fingerprint: "fp4", Route: "/none", Count: 1, Diffs: []api.PathKind{{Path: "$.a", Kind: compare.KindValueChanged}}},
	}}}
	js := json.RawMessage(`{"Content-Type":["application/json"]}`)
	ex := map[string]*api.Example{
		"fp1": {Diffs: []api.PathKind{{Path: "status", Kind: "status"}, {Path: "$.client", Kind: compare.KindFormatChanged},
			{Path: "$.items[1].price", Kind: "value_changed"}, {Path: "$.items[2].price", Kind: "value_changed"},
			{Path: "$.gone", Kind: "missing_field"}, {Path: "header.X-Content-Type-Options", Kind: "header"}},
			Primary: api.ExampleResponse{Status: 200, Headers: json.RawMessage(`{"Content-Type":["application/json"],"X-Content-Type-Options":["nosniff"]}`),
				Body: `{"client": "10.1.2.3:51234", "items": [{"price": 1}, {"price": 2.5}, {"price": 3}], "gone": "x"}`},
			Shadow: api.ExampleResponse{Status: 500, Headers: js, Body: `{"client":"10.1.2.3","items":[{"price":1},{"price":"2.50"},{"price":4}]}`}},
		"fp2": {Diffs: []api.PathKind{{Path: "$[1].v", Kind: "value_changed"}},
			Primary: api.ExampleResponse{Headers: json.RawMessage(`{"Content-Type":["application/x-ndjson"]}`), Body: "{\"v\":1}\n{\"v\":2}\n"},
			Shadow:  api.ExampleResponse{Headers: json.RawMessage(`{"Content-Type":["application/x-ndjson"]}`), Body: "{\"v\":1}\n{\"v\":3}\n"}},
		"fp3": {Diffs: []api.PathKind{{Path: "$", Kind: "body_text"}}, Primary: api.ExampleResponse{Body: "abc"}, Shadow: api.ExampleResponse{Body: "abcd"}},
	}
	var b strings.Builder
	PrintReportExamples(&b, r, ex)
	out := regexp.MustCompile(`  +`).ReplaceAllString(b.String(), "  ") // columns as two spaces
	for _, want := range []string{
		`$.client (string/ip:port -> string/ipv4)  format_changed  "10.1.2.3:51234" (string/ip:port) → "10.1.2.3" (string/ipv4)`,
		`$.items[*].price  value_changed  2.5 → "2.50"`, // one example per path: the first
		`$.gone  missing_field  "x" → (absent)`,
		`header.X-Content-Type-Options  header  "nosniff" → (absent)`,
		`status  status  200 → 500`,
		`$[*].v  value_changed  2 → 3`,
		`$  body_text  3 bytes → 4 bytes`,
		"  $.a  value_changed  \n", // no example: the difference alone
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not show %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "$.nothere  extra_field  (") {
		t.Errorf("a difference the example lacks shows values:\n%s", out)
	}
	if got := BeforeAfter(&api.Example{Diffs: []api.PathKind{{Path: "$.a", Kind: "value_changed"}},
		Primary: api.ExampleResponse{Headers: js, Body: `{"a": "` + strings.Repeat("é", 40) + `"}`}, Shadow: api.ExampleResponse{Headers: js, Body: `{`}},
		api.PathKind{Path: "$.a", Kind: "value_changed"}); !strings.HasSuffix(got, "… → (unreadable)") || !utf8.ValidString(got) {
		t.Errorf("bounded value: %q", got)
	}
}
