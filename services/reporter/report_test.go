package reporter_test

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// nearestRank is the quantile the report documents: the value of rank
// ceil(q*n) of the sorted values.
func nearestRank(values []float64, q float64) float64 {
	v := slices.Clone(values)
	slices.Sort(v)
	return v[int(math.Ceil(q*float64(len(v))))-1]
}

func quantilesOf(values []float64) api.Quantiles {
	return api.Quantiles{P50: nearestRank(values, 0.5), P95: nearestRank(values, 0.95), P99: nearestRank(values, 0.99)}
}

func checkQuantiles(t *testing.T, what string, got, want api.Quantiles) {
	t.Helper()
	// Within 1% (the histogram bin), plus the microsecond the reporter
	// rounds to.
	ok := func(g, w float64) bool { return math.Abs(g-w) <= 0.01*w+0.0011 }
	if !ok(got.P50, want.P50) || !ok(got.P95, want.P95) || !ok(got.P99, want.P99) {
		t.Errorf("%s latency = %+v, want %+v", what, got, want)
	}
}

// seed inserts 100 known pairs for launchID (plus a redelivered duplicate
// and another launch's rows) and returns the latencies it used.
func seed(t *testing.T, e *env, launchID string) (primaryMS, shadowMS map[string][]float64) {
	t.Helper()
	ts := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	primaryMS, shadowMS = map[string][]float64{}, map[string][]float64{}
	var rows []analytics.Row
	// GET /users/{id}: 60 pairs, primary 1..60 ms, shadow twice that; every
	// 10th differs in $.name, every 20th also lacks $.email.
	for i := 1; i <= 60; i++ {
		r := analytics.Row{LaunchID: launchID, EnvelopeID: fmt.Sprintf("%s-u%02d", launchID, i), TS: ts, Method: "GET",
			Route: "/users/{id}", Path: fmt.Sprintf("/users/%d", i), PrimaryStatus: 200, ShadowStatus: 200,
			PrimaryLatencyUS: uint64(i) * 1000, ShadowLatencyUS: uint64(i) * 2000, Match: true}
		if i%10 == 0 {
			r.Match = false
			r.DiffPaths, r.DiffKinds = []string{"$.name"}, []string{"value_changed"}
			if i%20 == 0 {
				r.DiffPaths, r.DiffKinds = append(r.DiffPaths, "$.email"), append(r.DiffKinds, "missing")
			}
		}
		primaryMS["/users/{id}"] = append(primaryMS["/users/{id}"], float64(i))
		shadowMS["/users/{id}"] = append(shadowMS["/users/{id}"], float64(2*i))
		rows = append(rows, r)
	}
	// POST /orders: 40 pairs, primary 5 ms; 36 answered in 10 ms (4 of them
	// with a different $.total type), 4 refused after a huge latency that
	// must not count in the shadow quantiles.
	for i := 1; i <= 40; i++ {
		r := analytics.Row{LaunchID: launchID, EnvelopeID: fmt.Sprintf("%s-o%02d", launchID, i), TS: ts, Method: "POST",
			Route: "/orders", Path: "/orders", PrimaryStatus: 201, ShadowStatus: 201,
			PrimaryLatencyUS: 5000, ShadowLatencyUS: 10000, Match: true}
		primaryMS["/orders"] = append(primaryMS["/orders"], 5)
		switch {
		case i > 36:
			r.Match, r.ShadowStatus, r.ShadowLatencyUS = false, 0, 30_000_000
			r.ShadowError, r.ShadowErrorKind = "dial tcp: connection refused", "refused"
			if i == 40 { // diffs of a failed shadow are noise: not counted
				r.DiffPaths, r.DiffKinds = []string{"$"}, []string{"missing"}
			}
		case i <= 4:
			r.Match = false
			r.DiffPaths, r.DiffKinds = []string{"$.total"}, []string{"type_changed"}
			shadowMS["/orders"] = append(shadowMS["/orders"], 10)
		default:
			shadowMS["/orders"] = append(shadowMS["/orders"], 10)
		}
		rows = append(rows, r)
	}
	// Another launch's rows must not leak in.
	other := rows[0]
	other.LaunchID, other.EnvelopeID = launchID+"-other", launchID+"-other-1"
	rows = append(rows, other)
	ctx := testenv.Context(t)
	if err := analytics.Insert(ctx, e.ch, testDB, rows); err != nil {
		t.Fatal(err)
	}
	// A redelivery stores a pair again in another insert; FINAL counts it once.
	if err := analytics.Insert(ctx, e.ch, testDB, rows[9:10]); err != nil {
		t.Fatal(err)
	}
	return primaryMS, shadowMS
}

func TestReport(t *testing.T) {
	e := startEnv(t, envOptions{cacheTTL: time.Minute})

	t.Run("known rows", func(t *testing.T) {
		e := *e
		e.t = t
		l := e.create("report", 10)
		primaryMS, shadowMS := seed(t, &e, l.ID)

		var rep api.Report
		res := e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &rep)
		if c := res.Header.Get("X-Darklaunch-Cache"); c != "miss" {
			t.Errorf("first report: X-Darklaunch-Cache %q, want miss", c)
		}
		if rep.Launch == nil || rep.Launch.ID != l.ID || rep.Launch.Name != "report" {
			t.Fatalf("report launch = %+v", rep.Launch)
		}
		if time.Since(rep.GeneratedAt) > time.Minute || rep.GeneratedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("generated_at %s is not now", rep.GeneratedAt)
		}
		wantTotals := api.Totals{Compared: 100, Mismatches: 10, ShadowErrors: 4, MismatchRate: 0.1, ShadowErrorRate: 0.04,
			RawMismatches: 10, RawMismatchRate: 0.1}
		if rep.Totals != wantTotals {
			t.Errorf("totals = %+v, want %+v", rep.Totals, wantTotals)
		}
		allPrimary := append(slices.Clone(primaryMS["/users/{id}"]), primaryMS["/orders"]...)
		allShadow := append(slices.Clone(shadowMS["/users/{id}"]), shadowMS["/orders"]...)
		checkQuantiles(t, "primary", rep.LatencyMS.Primary, quantilesOf(allPrimary))
		checkQuantiles(t, "shadow", rep.LatencyMS.Shadow, quantilesOf(allShadow))

		if len(rep.Routes) != 2 {
			t.Fatalf("routes = %+v, want 2", rep.Routes)
		}
		users, orders := rep.Routes[0], rep.Routes[1] // ordered by compared, descending
		if users.Route != "/users/{id}" || users.Method != "GET" || users.Compared != 60 || users.Mismatches != 6 || users.RawMismatches != 6 || users.ShadowErrors != 0 {
			t.Errorf("users route = %+v", users)
		}
		if orders.Route != "/orders" || orders.Method != "POST" || orders.Compared != 40 || orders.Mismatches != 4 || orders.RawMismatches != 4 || orders.ShadowErrors != 4 {
			t.Errorf("orders route = %+v", orders)
		}
		// 1..60 ms: the values of rank 30, 57 and 60.
		checkQuantiles(t, "users primary", users.LatencyMS.Primary, api.Quantiles{P50: 30, P95: 57, P99: 60})
		checkQuantiles(t, "users shadow", users.LatencyMS.Shadow, api.Quantiles{P50: 60, P95: 114, P99: 120})
		checkQuantiles(t, "orders primary", orders.LatencyMS.Primary, api.Quantiles{P50: 5, P95: 5, P99: 5})
		checkQuantiles(t, "orders shadow (errors excluded)", orders.LatencyMS.Shadow, api.Quantiles{P50: 10, P95: 10, P99: 10})

		wantDiffs := []api.DiffCount{
			{Path: "$.name", Kind: "value_changed", Count: 6},
			{Path: "$.total", Kind: "type_changed", Count: 4},
			{Path: "$.email", Kind: "missing", Count: 3},
		}
		if !slices.Equal(rep.Diffs, wantDiffs) {
			t.Errorf("diffs = %+v, want %+v", rep.Diffs, wantDiffs)
		}
	})

	t.Run("empty launch", func(t *testing.T) {
		e := *e
		e.t = t
		l := e.create("nothing yet", 10)
		res, data := e.do("GET", "/v1/launches/"+l.ID+"/report", nil)
		if res.StatusCode != 200 {
			t.Fatalf("status %d: %s", res.StatusCode, data)
		}
		body := string(data)
		for _, want := range []string{`"routes":[]`, `"diffs":[]`, `"compared":0`, `"mismatch_rate":0`, `"raw_mismatches":0`,
			`"classes":[]`, `"noise":{"min_count":5,"min_ratio":0.5,"suppressed":[]}`,
			`"primary":{"p50":0,"p95":0,"p99":0}`, `"shadow":{"p50":0,"p95":0,"p99":0}`} {
			if !strings.Contains(body, want) {
				t.Errorf("empty report lacks %s: %s", want, body)
			}
		}
		if strings.Contains(strings.ToLower(body), "nan") || strings.Contains(body, "null") {
			t.Errorf("empty report holds NaN or null: %s", body)
		}
	})

	t.Run("row with unequal diff arrays", func(t *testing.T) {
		e := *e
		e.t = t
		l := e.create("bad row", 10)
		ts := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
		good := analytics.Row{LaunchID: l.ID, EnvelopeID: l.ID + "-good", TS: ts, Method: "GET", Route: "/a",
			DiffPaths: []string{"$.a"}, DiffKinds: []string{"value_changed"}}
		bad := good
		bad.EnvelopeID, bad.DiffPaths, bad.DiffKinds = l.ID+"-bad", []string{"$.b", "$.c"}, []string{"missing"}
		// Generalized paths and noise flags of other lengths than the paths,
		// in a class of its own with a secondary: read as "no generalized
		// path" and "not noise".
		worse := good
		worse.EnvelopeID, worse.DiffPaths, worse.DiffKinds = l.ID+"-worse", []string{"$.d[0]", "$.e"}, []string{"missing_field", "extra_field"}
		worse.DiffGeneralized, worse.DiffNoise, worse.HasSecondary, worse.Fingerprint = []string{"$.d[*]"}, []bool{true, true, true}, true, "fp-worse"
		if err := analytics.Insert(testenv.Context(t), e.ch, testDB, []analytics.Row{good, bad, worse}); err != nil {
			t.Fatal(err)
		}
		var rep api.Report
		e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &rep)
		if rep.Totals.Compared != 3 || rep.Totals.Mismatches != 3 || len(rep.Noise.Suppressed) != 0 ||
			!slices.Equal(rep.Diffs, []api.DiffCount{{Path: "$.a", Kind: "value_changed", Count: 1},
				{Path: "$.d[0]", Kind: "missing_field", Count: 1}, {Path: "$.e", Kind: "extra_field", Count: 1}}) {
			t.Fatalf("report = %+v, diffs %+v", rep.Totals, rep.Diffs)
		}
		if len(rep.Classes) != 1 || rep.Classes[0].Fingerprint != "fp-worse" ||
			!slices.Equal(rep.Classes[0].Diffs, []api.PathKind{{Path: "$.d[0]", Kind: "missing_field"}, {Path: "$.e", Kind: "extra_field"}}) {
			t.Fatalf("classes = %+v", rep.Classes)
		}
	})

	t.Run("query binds the launch id", func(t *testing.T) {
		// The API never passes such an id (the store refuses it), but the
		// query must treat any id as a value, not as SQL.
		ctx := testenv.Context(t)
		st, err := reporter.QueryStats(ctx, e.ch, testDB, `x' OR launch_id != '`, api.NoiseThresholds{MinCount: 1, MinRatio: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		if st.Totals.Compared != 0 || len(st.Routes) != 0 || len(st.Diffs) != 0 {
			t.Fatalf("an id holding quotes matched rows: %+v", st.Totals)
		}
	})
}

func TestReportCache(t *testing.T) {
	e := startEnv(t, envOptions{cacheTTL: time.Minute})
	report := func(id string) (string, api.Report) {
		t.Helper()
		var rep api.Report
		res := e.ok(http.StatusOK, "GET", "/v1/launches/"+id+"/report", nil, &rep)
		return res.Header.Get("X-Darklaunch-Cache"), rep
	}

	l := e.create("cached", 10)
	seed(t, e, l.ID)
	before := e.svc.ReportQueries()
	c1, r1 := report(l.ID)
	c2, r2 := report(l.ID)
	if c1 != "miss" || c2 != "hit" {
		t.Fatalf("X-Darklaunch-Cache = %s then %s, want miss then hit", c1, c2)
	}
	if n := e.svc.ReportQueries() - before; n != 1 {
		t.Fatalf("two polls ran %d ClickHouse computations, want 1", n)
	}
	if r2.Totals != r1.Totals || !r2.GeneratedAt.Equal(r1.GeneratedAt) || !slices.Equal(r2.Diffs, r1.Diffs) || len(r2.Routes) != len(r1.Routes) {
		t.Fatalf("cached report differs: %+v vs %+v", r2.Stats, r1.Stats)
	}
	// The launch part is read fresh, not cached with the numbers.
	e.ok(http.StatusOK, "POST", "/v1/launches/"+l.ID+"/pause", nil, nil)
	if c, r := report(l.ID); c != "hit" || r.Launch.Status != "paused" {
		t.Fatalf("after pause: cache %s, status %s; want hit and paused", c, r.Launch.Status)
	}
	rdb := redis.NewClient(mustParseRedisURL(t, e.redis.URL()))
	defer rdb.Close()
	ttl, err := rdb.PTTL(testenv.Context(t), "darklaunch:reporter:report:v4:"+l.ID).Result()
	if err != nil || ttl <= 10*time.Minute || ttl > 11*time.Minute {
		t.Fatalf("cache key TTL = %s (%v), want within (10m, 11m]: the TTL and 10 minutes kept as stale", ttl, err)
	}

	t.Run("concurrent cold polls share one query", func(t *testing.T) {
		cold := e.create("cold", 10)
		seed(t, e, cold.ID)
		before := e.svc.ReportQueries()
		const n = 24
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]api.Report, n)
		codes := make([]int, n)
		for i := range n {
			wg.Go(func() {
				<-start
				var rep api.Report
				res, data := request(t, "GET", e.base+"/v1/launches/"+cold.ID+"/report", nil, "Authorization", "Bearer "+e.token)
				codes[i] = res.StatusCode
				if res.StatusCode == 200 {
					if err := jsonUnmarshal(data, &rep); err != nil {
						t.Error(err)
					}
				}
				results[i] = rep
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if codes[i] != 200 || results[i].Totals.Compared != 100 {
				t.Fatalf("poll %d: status %d, totals %+v", i, codes[i], results[i].Totals)
			}
		}
		if q := e.svc.ReportQueries() - before; q != 1 {
			t.Fatalf("%d concurrent polls on a cold cache ran %d ClickHouse computations, want 1", n, q)
		}
	})

	t.Run("healthz all up", func(t *testing.T) {
		var h struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		e.ok(http.StatusOK, "GET", "/healthz", nil, &h)
		if h.Status != "ok" || h.Checks["nats"] != "ok" || h.Checks["clickhouse"] != "ok" || h.Checks["redis"] != "ok" {
			t.Fatalf("healthz = %+v", h)
		}
	})

	t.Run("redis down", func(t *testing.T) {
		e.redis.Stop()
		fresh := e.create("no cache", 10)
		seed(t, e, fresh.ID)
		before := e.svc.ReportQueries()
		// Computed once, then served from this reporter's memory.
		for i := range 3 {
			c, rep := report(fresh.ID)
			if want := map[bool]string{true: "miss", false: "hit"}[i == 0]; c != want || rep.Totals.Compared != 100 {
				t.Fatalf("poll %d with Redis down: cache %s, totals %+v; want %s", i, c, rep.Totals, want)
			}
		}
		// The launch cached before is still served, from memory.
		if c, rep := report(l.ID); c != "hit" || rep.Totals.Compared != 100 {
			t.Fatalf("previously cached launch with Redis down: cache %s, totals %+v", c, rep.Totals)
		}
		if q := e.svc.ReportQueries() - before; q != 1 {
			t.Fatalf("4 polls with Redis down ran %d computations, want 1", q)
		}

		for _, base := range []string{e.base, e.admin} {
			res, data := request(t, "GET", base+"/healthz", nil)
			var h struct {
				Status string            `json:"status"`
				Checks map[string]string `json:"checks"`
			}
			if err := jsonUnmarshal(data, &h); err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != 503 || h.Status != "degraded" || h.Checks["redis"] == "ok" || h.Checks["redis"] == "" ||
				h.Checks["nats"] != "ok" || h.Checks["clickhouse"] != "ok" {
				t.Fatalf("%s/healthz with Redis down = %d %s", base, res.StatusCode, data)
			}
			// Ready all the same: the reports above were served.
			res, data = request(t, "GET", base+"/readyz", nil)
			h.Checks = nil
			if err := jsonUnmarshal(data, &h); err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != 200 || h.Status != "degraded" || h.Checks["redis"] == "ok" || h.Checks["redis"] == "" {
				t.Fatalf("%s/readyz with Redis down = %d %s, want 200 and the Redis error", base, res.StatusCode, data)
			}
		}
		_, data := request(t, "GET", e.admin+"/metrics", nil)
		if !strings.Contains(string(data), `darklaunch_reporter_cache_errors_total{op="get"}`) {
			t.Fatalf("metrics do not count cache errors")
		}
	})
}
