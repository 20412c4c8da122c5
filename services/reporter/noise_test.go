package reporter_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// d is one difference of a seeded row: a concrete path, its generalized
// form ("" to store none, as rows written before the column existed) and
// whether it was per-request noise.
type d struct {
	path, gen, kind string
	noise           bool
}

// noiseRows builds rows for the noise tests; every row has its own
// envelope id and a time one second after the previous one.
type noiseRows struct {
	launchID string
	start    time.Time
	rows     []analytics.Row
}

func (n *noiseRows) add(route, fingerprint string, secondary bool, diffs ...d) *analytics.Row {
	i := len(n.rows)
	r := analytics.Row{LaunchID: n.launchID, EnvelopeID: fmt.Sprintf("%s-%03d", n.launchID, i),
		TS: n.start.Add(time.Duration(i)*time.Second + 1500*time.Microsecond), Method: "GET", Route: route, Path: route,
		PrimaryStatus: 200, ShadowStatus: 200, PrimaryLatencyUS: 1000, ShadowLatencyUS: 1000,
		Match: len(diffs) == 0, HasSecondary: secondary, Fingerprint: fingerprint}
	legacy := false
	for _, x := range diffs {
		r.DiffPaths = append(r.DiffPaths, x.path)
		r.DiffKinds = append(r.DiffKinds, x.kind)
		r.DiffGeneralized = append(r.DiffGeneralized, x.gen)
		r.DiffNoise = append(r.DiffNoise, x.noise)
		legacy = legacy || x.gen == ""
	}
	if legacy {
		r.DiffGeneralized, r.DiffNoise = nil, nil
	}
	n.rows = append(n.rows, r)
	return &n.rows[len(n.rows)-1]
}

// repeat adds k identical rows.
func (n *noiseRows) repeat(k int, route, fingerprint string, secondary bool, diffs ...d) {
	for range k {
		n.add(route, fingerprint, secondary, diffs...)
	}
}

func v(path string, noise bool) d { return d{path, path, "value_changed", noise} }

// seedNoise inserts a launch's rows covering every noise rule, and returns
// them. With the default thresholds (5 noisy, 50 %):
//
//	/status  $.request_id 14 of 16 noisy, $.generated_at 10 of 12: both
//	         suppressed; the one pair that also changed $.state counts.
//	/below   $.b 4 noisy of 8: under the count, 4 pairs count.
//	/at      $.b 5 noisy of 10: exactly at both thresholds, suppressed, and
//	         a row from before the new columns ($.b, no generalized path,
//	         no noise flags, no secondary) is suppressed too.
//	/ratio   $.b 5 noisy of 11: under the ratio, 6 pairs count.
//	/items   $.items[*].ts 6 noisy of 7 across array elements: suppressed.
//	/plain   no secondary: one pair with a real diff.
func seedNoise(t *testing.T, e *env, launchID string) *noiseRows {
	t.Helper()
	n := &noiseRows{launchID: launchID, start: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	n.repeat(10, "/status", "", true, v("$.request_id", true), v("$.generated_at", true))
	n.repeat(2, "/status", "fp-status-gen", true, v("$.request_id", true), v("$.generated_at", false)) // the secondary agreed on the time
	n.repeat(2, "/status", "fp-status-id", false, v("$.request_id", false))                            // no secondary
	n.add("/status", "fp-status-state", true, v("$.request_id", true), v("$.state", false))
	n.add("/status", "", true) // identical
	n.repeat(4, "/below", "", true, v("$.b", true))
	n.repeat(4, "/below", "fp-below", true, v("$.b", false))
	n.repeat(5, "/at", "", true, v("$.b", true))
	n.repeat(5, "/at", "fp-at", true, v("$.b", false))
	n.add("/at", "fp-at", false, d{"$.b", "", "value_changed", false})
	n.repeat(5, "/ratio", "", true, v("$.b", true))
	n.repeat(6, "/ratio", "fp-ratio", true, v("$.b", false))
	n.repeat(3, "/items", "", true, d{"$.items[0].ts", "$.items[*].ts", "value_changed", true}, d{"$.items[1].ts", "$.items[*].ts", "value_changed", true})
	n.add("/items", "fp-items", true, d{"$.items[2].ts", "$.items[*].ts", "value_changed", false})
	plain := n.add("/plain", "fp-plain", false, d{"$.items[3].price", "$.items[*].price", "value_changed", false}, d{"$.name", "$.name", "missing_field", false})
	plain.DiffPaths, plain.DiffKinds = append(plain.DiffPaths, "status"), append(plain.DiffKinds, "status") // kinds/paths stay parallel
	plain.DiffGeneralized, plain.DiffNoise = append(plain.DiffGeneralized, "status"), append(plain.DiffNoise, false)
	// A failed shadow's diffs never count, noisy or not.
	failed := n.add("/status", "", true, v("$.request_id", false))
	failed.ShadowStatus, failed.ShadowError, failed.ShadowErrorKind = 0, "timeout", "timeout"

	ctx := testenv.Context(t)
	if err := analytics.Insert(ctx, e.ch, testDB, n.rows); err != nil {
		t.Fatal(err)
	}
	// Another launch with the same routes and fingerprints must not leak in.
	other := slices.Clone(n.rows[:20])
	for i := range other {
		other[i].LaunchID, other[i].EnvelopeID = launchID+"-other", fmt.Sprintf("%s-other-%d", launchID, i)
		other[i].DiffNoise = make([]bool, len(other[i].DiffPaths))
	}
	if err := analytics.Insert(ctx, e.ch, testDB, other); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReportNoise(t *testing.T) {
	e := startEnv(t, envOptions{})
	l := e.create("noise", 10)
	n := seedNoise(t, e, l.ID)
	ctx := testenv.Context(t)
	// The examples of two classes; one of them is noise.
	var ex []analytics.Example
	for _, r := range n.rows {
		slots := map[string]int{"fp-below": 2, "fp-at": 1}
		if have := len(exampleIDs(ex, r.Fingerprint)); have < slots[r.Fingerprint] {
			ex = append(ex, analytics.Example{LaunchID: l.ID, Fingerprint: r.Fingerprint, Slot: uint8(have), EnvelopeID: r.EnvelopeID,
				TS: r.TS, Route: r.Route, Method: r.Method, Path: r.Path, Query: "a=1",
				DiffPaths: r.DiffPaths, DiffKinds: r.DiffKinds,
				RequestHeaders: `{"Authorization":["[redacted]"],"Accept":["application/json"]}`, RequestBody: "",
				PrimaryStatus: 200, PrimaryHeaders: `{"Content-Type":["application/json"]}`, PrimaryBody: `{"b":1,"password":"[redacted]"}`,
				ShadowStatus: 200, ShadowHeaders: `not json`, ShadowBody: `{"b":2,"password":"[redacted]"}`})
		}
	}
	if err := analytics.InsertExamples(ctx, e.ch, testDB, ex); err != nil {
		t.Fatal(err)
	}

	var rep api.Report
	e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &rep)

	// 52 rows: 51 answered (1 identical), 1 failed; 4 without a secondary.
	wantTotals := api.Totals{Compared: 52, ShadowErrors: 1, RawMismatches: 50, WithSecondary: 48,
		Mismatches: 1 + 4 + 6 + 1} // /status $.state, /below, /ratio, /plain
	wantTotals.MismatchRate = float64(wantTotals.Mismatches) / 52
	wantTotals.RawMismatchRate = 50.0 / 52
	wantTotals.ShadowErrorRate = 1.0 / 52
	if rep.Totals != wantTotals {
		t.Errorf("totals = %+v\nwant     %+v", rep.Totals, wantTotals)
	}
	type counts struct{ compared, raw, mismatches uint64 }
	gotRoutes := map[string]counts{}
	for _, r := range rep.Routes {
		gotRoutes[r.Route] = counts{r.Compared, r.RawMismatches, r.Mismatches}
	}
	wantRoutes := map[string]counts{
		"/status": {17, 15, 1}, "/below": {8, 8, 4}, "/at": {11, 11, 0}, "/ratio": {11, 11, 6}, "/items": {4, 4, 0}, "/plain": {1, 1, 1},
	}
	if fmt.Sprint(gotRoutes) != fmt.Sprint(wantRoutes) {
		t.Errorf("routes (compared, raw, mismatches) = %v\nwant %v", gotRoutes, wantRoutes)
	}

	// Counted over the pairs the secondary answered, most noisy (relatively)
	// first.
	wantSuppressed := []api.SuppressedPath{
		{Route: "/status", Path: "$.request_id", Raw: 13, Noisy: 13, Ratio: 1},
		{Route: "/items", Path: "$.items[*].ts", Raw: 7, Noisy: 6, Ratio: 0.8571},
		{Route: "/status", Path: "$.generated_at", Raw: 12, Noisy: 10, Ratio: 0.8333},
		{Route: "/at", Path: "$.b", Raw: 10, Noisy: 5, Ratio: 0.5},
	}
	if rep.Noise.MinCount != 5 || rep.Noise.MinRatio != 0.5 || len(rep.Noise.Suppressed) != len(wantSuppressed) {
		t.Fatalf("noise = %+v, want %d suppressed paths at 5 and 0.5", rep.Noise, len(wantSuppressed))
	}
	for i, w := range wantSuppressed {
		g := rep.Noise.Suppressed[i]
		reason := g.Reason
		g.Reason = ""
		if g != w {
			t.Errorf("suppressed[%d] = %+v, want %+v", i, g, w)
		}
		want := fmt.Sprintf("noisy in %d of %d differences", w.Noisy, w.Raw)
		if !strings.Contains(reason, want) || !strings.Contains(reason, "from 5 noisy and 50%") {
			t.Errorf("suppressed[%d] reason %q lacks %q and the thresholds", i, reason, want)
		}
	}

	wantDiffs := map[string][2]uint64{ // count, noisy
		"$.request_id value_changed":     {15, 13}, // 2 without a secondary; the failed shadow's left out
		"$.generated_at value_changed":   {12, 10},
		"$.state value_changed":          {1, 0},
		"$.b value_changed":              {8 + 11 + 11, 4 + 5 + 5},
		"$.items[*].ts value_changed":    {7, 6},
		"$.items[*].price value_changed": {1, 0},
		"$.name missing_field":           {1, 0},
		"status status":                  {1, 0},
	}
	gotDiffs := map[string][2]uint64{}
	for _, x := range rep.Diffs {
		gotDiffs[x.Path+" "+x.Kind] = [2]uint64{x.Count, x.Noisy}
	}
	if fmt.Sprint(gotDiffs) != fmt.Sprint(wantDiffs) {
		t.Errorf("diffs = %v\nwant    %v", gotDiffs, wantDiffs)
	}
	if rep.Diffs[0].Path != "$.b" || rep.Diffs[0].Count != 30 {
		t.Errorf("diffs not ordered by count: %+v", rep.Diffs)
	}

	// Classes: fingerprints with a counted mismatch; fp-at, fp-items and the
	// /status classes of suppressed paths only are noise.
	first := func(fp string) (f, l time.Time, c uint64) {
		for _, r := range n.rows {
			if r.Fingerprint != fp || r.ShadowError != "" {
				continue
			}
			if c == 0 || r.TS.Before(f) {
				f = r.TS
			}
			if r.TS.After(l) {
				l = r.TS
			}
			c++
		}
		return f.Truncate(time.Microsecond), l.Truncate(time.Microsecond), c
	}
	wantClasses := []struct {
		fp, route string
		diffs     []api.PathKind
		routeN    float64
		examples  []string
	}{
		{"fp-ratio", "/ratio", []api.PathKind{{Path: "$.b", Kind: "value_changed"}}, 11, nil},
		{"fp-below", "/below", []api.PathKind{{Path: "$.b", Kind: "value_changed"}}, 8, exampleIDs(ex, "fp-below")},
		{"fp-plain", "/plain", []api.PathKind{{Path: "$.items[*].price", Kind: "value_changed"}, {Path: "$.name", Kind: "missing_field"}, {Path: "status", Kind: "status"}}, 1, nil},
		{"fp-status-state", "/status", []api.PathKind{{Path: "$.state", Kind: "value_changed"}}, 17, nil},
	}
	if len(rep.Classes) != len(wantClasses) {
		t.Fatalf("classes = %+v, want %d", rep.Classes, len(wantClasses))
	}
	for i, w := range wantClasses {
		c := rep.Classes[i]
		f, last, count := first(w.fp)
		if w.examples == nil {
			w.examples = []string{}
		}
		if c.Fingerprint != w.fp || c.Route != w.route || !slices.Equal(c.Diffs, w.diffs) || c.Count != count ||
			!c.FirstSeen.Equal(f) || !c.LastSeen.Equal(last) || c.ShareOfRoute != float64(count)/w.routeN || !slices.Equal(c.Examples, w.examples) {
			t.Errorf("class %d = %+v\nwant %s %s %v count %d, %s to %s, share %v, examples %v", i, c, w.fp, w.route, w.diffs, count, f, last,
				float64(count)/w.routeN, w.examples)
		}
	}

	t.Run("thresholds", func(t *testing.T) {
		for _, c := range []struct {
			th         api.NoiseThresholds
			mismatches uint64
			suppressed []string
		}{
			// One more noisy difference needed: /at's 5 pairs count now.
			{api.NoiseThresholds{MinCount: 6, MinRatio: 0.5}, 12 + 6, []string{"/items $.items[*].ts", "/status $.request_id", "/status $.generated_at"}},
			// A lower ratio takes /ratio's $.b (5 of 11) in.
			{api.NoiseThresholds{MinCount: 5, MinRatio: 0.45}, 12 - 6, []string{"/items $.items[*].ts", "/status $.request_id", "/status $.generated_at", "/at $.b", "/ratio $.b"}},
			// No path has 14 noisy differences: only per-request noise is
			// discounted (/status's 2 pairs without a secondary and 2 whose
			// secondary agreed, /at's 6, /items's 1 count again).
			{api.NoiseThresholds{MinCount: 14, MinRatio: 0.5}, 12 + 4 + 6 + 1, nil},
		} {
			st, err := reporter.QueryStats(ctx, e.ch, testDB, l.ID, c.th)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range st.Noise.Suppressed {
				got = append(got, s.Route+" "+s.Path)
			}
			slices.Sort(got)
			slices.Sort(c.suppressed)
			if st.Totals.Mismatches != c.mismatches || st.Totals.RawMismatches != 50 || !slices.Equal(got, c.suppressed) {
				t.Errorf("%+v: mismatches %d (raw %d), suppressed %v; want %d (50), %v", c.th, st.Totals.Mismatches,
					st.Totals.RawMismatches, got, c.mismatches, c.suppressed)
			}
		}
	})

	t.Run("examples endpoint", func(t *testing.T) {
		var list api.ExampleList
		e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/examples/fp-below", nil, &list)
		if list.LaunchID != l.ID || list.Fingerprint != "fp-below" || len(list.Examples) != 2 {
			t.Fatalf("examples = %+v", list)
		}
		want := exampleIDs(ex, "fp-below")
		for i, x := range list.Examples { // in slot order
			if x.EnvelopeID != want[i] || x.Route != "/below" || x.Method != "GET" || x.Query != "a=1" || x.TS.Second() != n.start.Add(time.Duration(20+i)*time.Second).Second() ||
				!slices.Equal(x.Diffs, []api.PathKind{{Path: "$.b", Kind: "value_changed"}}) ||
				string(x.Request.Headers) != `{"Authorization":["[redacted]"],"Accept":["application/json"]}` ||
				x.Primary.Status != 200 || string(x.Primary.Headers) != `{"Content-Type":["application/json"]}` || x.Primary.Body != `{"b":1,"password":"[redacted]"}` ||
				string(x.Shadow.Headers) != `"not json"` || x.Shadow.Body != `{"b":2,"password":"[redacted]"}` || x.Shadow.Error != "" {
				t.Errorf("example %d = %+v (request headers %s)", i, x, x.Request.Headers)
			}
		}
		var none api.ExampleList
		res, data := e.do("GET", "/v1/launches/"+l.ID+"/examples/0123456789abcdef", nil)
		if res.StatusCode != 200 || json.Unmarshal(data, &none) != nil || none.Examples == nil || len(none.Examples) != 0 ||
			!strings.Contains(string(data), `"examples":[]`) {
			t.Fatalf("unknown class: %d %s", res.StatusCode, data)
		}
		e.apiError(http.StatusNotFound, "GET", "/v1/launches/0197f0c2-7d3e-7abc-8def-0123456789ab/examples/fp-below", nil, "not found")
	})
}

func exampleIDs(ex []analytics.Example, fp string) []string {
	var ids []string
	for _, x := range ex {
		if x.Fingerprint == fp {
			ids = append(ids, x.EnvelopeID)
		}
	}
	slices.Sort(ids)
	return ids
}
