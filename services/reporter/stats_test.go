package reporter_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// shapedRows are n pairs of one launch over minutes minutes from start,
// shaped like the demo's: a noisy route whose paths get suppressed, a
// regression on another, array paths, shadow errors and 5xx answers,
// pairs without a secondary, a few malformed rows.
func shapedRows(launchID string, start time.Time, n, minutes int, seed uint64) []analytics.Row {
	rnd := rand.New(rand.NewPCG(seed, 7))
	rows := make([]analytics.Row, 0, n)
	for i := range n {
		ts := start.Add(time.Duration(rnd.Int64N(int64(minutes) * int64(time.Minute))))
		r := analytics.Row{LaunchID: launchID, EnvelopeID: fmt.Sprintf("%s-%07d", launchID, i), TS: ts, Method: "GET",
			PrimaryStatus: 200, ShadowStatus: 200, PrimaryLatencyUS: uint64(800 + rnd.IntN(9000)),
			ShadowLatencyUS: uint64(900 + rnd.IntN(11000)), HasSecondary: rnd.IntN(10) > 0, Match: true}
		if r.HasSecondary {
			r.SecondaryStatus, r.SecondaryLatencyUS = 200, uint64(800+rnd.IntN(9500))
		} else if rnd.IntN(2) == 0 {
			r.SecondaryError = "connection refused"
		}
		switch i % 5 {
		case 0:
			r.Route, r.Match = "/api/status", false
			r.DiffPaths, r.DiffGeneralized, r.DiffKinds = []string{"$.request_id", "$.generated_at"}, []string{"$.request_id", "$.generated_at"}, []string{"value_changed", "value_changed"}
			r.DiffNoise = []bool{r.HasSecondary, r.HasSecondary && rnd.IntN(50) > 0}
			if !r.DiffNoise[1] {
				r.Fingerprint = "status-gen"
			}
		case 1:
			r.Route, r.Method, r.Match, r.Fingerprint = "/api/orders/{id}", "POST", false, "orders"
			r.DiffPaths, r.DiffGeneralized, r.DiffKinds = []string{"$.total", "$.currency"}, []string{"$.total", "$.currency"}, []string{"type_changed", "missing_field"}
			r.DiffNoise = []bool{false, false}
		case 2:
			r.Route = "/api/items"
			if rnd.IntN(7) == 0 {
				j := rnd.IntN(20)
				r.Match, r.Fingerprint = false, "items"
				r.DiffPaths = []string{fmt.Sprintf("$.items[%d].price", j), fmt.Sprintf("$.items[%d].ts", j)}
				r.DiffGeneralized, r.DiffKinds = []string{"$.items[*].price", "$.items[*].ts"}, []string{"value_changed", "value_changed"}
				r.DiffNoise = []bool{false, r.HasSecondary}
				if !r.HasSecondary { // the fingerprint leaves per-request noise out
					r.Fingerprint = "items-ts"
				}
			}
		default:
			r.Route = fmt.Sprintf("/api/r%d", i%5)
			switch rnd.IntN(40) {
			case 0:
				r.Match, r.ShadowStatus, r.ShadowError, r.ShadowErrorKind, r.ShadowLatencyUS = false, 0, "timeout", "timeout", 30_000_000
			case 1:
				r.ShadowStatus, r.Match = 503, false
				r.DiffPaths, r.DiffKinds, r.Fingerprint = []string{"status"}, []string{"status"}, "status-"+r.Route
			case 2:
				r.PrimaryStatus = 500
			case 3: // a mismatch without recorded paths, and a bad row
				r.Match = false
			case 4:
				r.Match, r.DiffPaths, r.DiffKinds = false, []string{"$.a", "$.b"}, []string{"value_changed"}
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// compareStats checks that the aggregate-based report equals the raw-row
// one: every count exactly, latencies within 2% (the raw query
// interpolates a reservoir sample, the aggregates read 1% histograms);
// the overall latencies within 1% of the exact quantiles of rows.
func compareStats(t *testing.T, what string, got, want *api.Stats, rows []analytics.Row) {
	t.Helper()
	if got.Totals != want.Totals {
		t.Errorf("%s: totals %+v, raw %+v", what, got.Totals, want.Totals)
	}
	primary, shadow := latencies(rows, 0, false)
	checkExact(t, what+" primary", ms(got.LatencyMS.Primary), primary)
	checkExact(t, what+" shadow", ms(got.LatencyMS.Shadow), shadow)
	var secondary []float64
	for _, r := range rows {
		if r.HasSecondary {
			secondary = append(secondary, float64(r.SecondaryLatencyUS))
		}
	}
	if got.LatencyMS.Secondary == nil {
		t.Errorf("%s: no secondary latency, %d pairs had one", what, len(secondary))
	} else {
		checkExact(t, what+" secondary", ms(*got.LatencyMS.Secondary), secondary)
	}
	if len(got.Routes) != len(want.Routes) {
		t.Fatalf("%s: %d routes, raw %d", what, len(got.Routes), len(want.Routes))
	}
	for i := range got.Routes {
		g, w := got.Routes[i], want.Routes[i]
		checkLatency(t, what+" "+g.Route, g.LatencyMS, w.LatencyMS)
		g.LatencyMS, w.LatencyMS = api.Latency{}, api.Latency{}
		if g != w {
			t.Errorf("%s: route %d %+v, raw %+v", what, i, g, w)
		}
	}
	if !slices.Equal(got.Diffs, want.Diffs) {
		t.Errorf("%s: diffs %+v, raw %+v", what, got.Diffs, want.Diffs)
	}
	if fmt.Sprint(got.Noise) != fmt.Sprint(want.Noise) {
		t.Errorf("%s: noise %+v, raw %+v", what, got.Noise, want.Noise)
	}
	if fmt.Sprint(got.Classes) != fmt.Sprint(want.Classes) {
		t.Errorf("%s: classes\n%+v\nraw\n%+v", what, got.Classes, want.Classes)
	}
}

func checkLatency(t *testing.T, what string, got, want api.Latency) {
	t.Helper()
	close := func(a, b float64) bool { return math.Abs(a-b) <= 0.02*math.Max(a, b)+0.002 }
	if (got.Secondary == nil) != (want.Secondary == nil) {
		t.Errorf("%s: secondary latency %v, raw %v", what, got.Secondary, want.Secondary)
		return
	}
	cs := []struct{ g, w api.Quantiles }{{got.Primary, want.Primary}, {got.Shadow, want.Shadow}}
	if got.Secondary != nil {
		cs = append(cs, struct{ g, w api.Quantiles }{*got.Secondary, *want.Secondary})
	}
	for _, c := range cs {
		if !close(c.g.P50, c.w.P50) || !close(c.g.P95, c.w.P95) || !close(c.g.P99, c.w.P99) {
			t.Errorf("%s: latency %+v, raw %+v", what, got, want)
			return
		}
	}
}

// exactQuantile is the nearest-rank quantile: the value of rank
// ceil(q*n).
func exactQuantile(values []float64, q float64) float64 {
	v := slices.Clone(values)
	slices.Sort(v)
	return v[int(math.Ceil(q*float64(len(v))))-1]
}

// checkExact: a latency the histograms give is within 1% (plus the
// microsecond it is rounded to) of the exact nearest-rank quantile.
func checkExact(t *testing.T, what string, got [3]float64, values []float64) {
	t.Helper()
	for i, q := range []float64{0.5, 0.95, 0.99} {
		if want := exactQuantile(values, q); math.Abs(got[i]-want) > 0.01*want+1 {
			t.Errorf("%s: p%g = %.1f µs, exact %.1f µs", what, 100*q, got[i], want)
		}
	}
}

// latencies are the primary's latencies over every pair and the shadow's
// over those it answered (the report's), or the primary's over those the
// shadow answered (answeredOnly, the verdict's), in µs, of the rows
// received from fromUS on.
func latencies(rows []analytics.Row, fromUS int64, answeredOnly bool) (primary, shadow []float64) {
	for _, r := range rows {
		if r.TS.UnixMicro() < fromUS {
			continue
		}
		if r.ShadowError == "" {
			shadow = append(shadow, float64(r.ShadowLatencyUS))
		} else if answeredOnly {
			continue
		}
		primary = append(primary, float64(r.PrimaryLatencyUS))
	}
	return primary, shadow
}

func ms(q api.Quantiles) [3]float64 { return [3]float64{q.P50 * 1000, q.P95 * 1000, q.P99 * 1000} }

func compareWindow(t *testing.T, what string, got, want *reporter.WindowStats, rows []analytics.Row) {
	t.Helper()
	g, w := *got, *want
	primary, shadow := latencies(rows, g.FromUS, true)
	checkExact(t, what+" primary", g.PrimaryUS, primary)
	checkExact(t, what+" shadow", g.ShadowUS, shadow)
	if g.Answered != g.Slower+g.Faster+g.Tied {
		t.Errorf("%s: answered %d != slower %d + faster %d + tied %d", what, g.Answered, g.Slower, g.Faster, g.Tied)
	}
	// The shadow and the secondary over the pairs both answered.
	var pairedShadow, secondary []float64
	for _, r := range rows {
		if r.TS.UnixMicro() >= g.FromUS && r.ShadowError == "" && r.HasSecondary {
			pairedShadow, secondary = append(pairedShadow, float64(r.ShadowLatencyUS)), append(secondary, float64(r.SecondaryLatencyUS))
		}
	}
	if g.SecAnswered() != uint64(len(secondary)) || g.SecAnswered() == 0 {
		t.Errorf("%s: %d pairs answered by shadow and secondary, want %d", what, g.SecAnswered(), len(secondary))
	}
	checkExact(t, what+" paired shadow", g.PairedShadowUS, pairedShadow)
	checkExact(t, what+" secondary", g.SecondaryUS, secondary)
	g.GeneratedAt, w.GeneratedAt = time.Time{}, time.Time{}
	g.PrimaryUS, g.ShadowUS, w.PrimaryUS, w.ShadowUS = [3]float64{}, [3]float64{}, [3]float64{}, [3]float64{}
	g.PairedShadowUS, g.SecondaryUS, w.PairedShadowUS, w.SecondaryUS = [3]float64{}, [3]float64{}, [3]float64{}, [3]float64{}
	g.Faster, g.Tied = 0, 0
	if g != w {
		t.Errorf("%s: window %+v, raw %+v", what, g, w)
	}
}

// TestStatsEqualRaw: the report and the verdict window computed from the
// sealed aggregates and the unsealed tail equal those computed from the
// raw rows with FINAL: before anything is sealed, with part sealed, after
// a batch was inserted twice (into sealed and unsealed buckets, before
// and after resealing), and for windows starting inside a bucket.
func TestStatsEqualRaw(t *testing.T) {
	ctx, conn := openTestDB(t)
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rows := shapedRows("l1", start, 30_000, 20, 1)
	if err := analytics.Insert(ctx, conn, testDB, append(rows, shapedRows("l2", start, 1000, 20, 2)...)); err != nil {
		t.Fatal(err)
	}
	th := api.NoiseThresholds{MinCount: 5, MinRatio: 0.5}
	windows := []time.Time{start.Add(7*time.Minute + 31*time.Second + 777*time.Microsecond), start.Add(12 * time.Minute),
		start.Add(9*time.Minute + 5*time.Second + 500*time.Millisecond)}
	check := func(what string) {
		t.Helper()
		got, err := reporter.QueryStats(ctx, conn, testDB, "l1", th)
		if err != nil {
			t.Fatal(err)
		}
		want, err := reporter.QueryStatsRaw(ctx, conn, testDB, "l1", th)
		if err != nil {
			t.Fatal(err)
		}
		if want.Totals.Compared != 30_000 || len(want.Noise.Suppressed) == 0 || len(want.Classes) < 3 {
			t.Fatalf("%s: the raw report is not the data's: %+v, %+v", what, want.Totals, want.Noise.Suppressed)
		}
		compareStats(t, what, got, want, rows)
		for _, from := range windows {
			gw, err := reporter.QueryWindow(ctx, conn, testDB, "l1", from.UnixMicro(), th)
			if err != nil {
				t.Fatal(err)
			}
			ww, err := reporter.QueryWindowRaw(ctx, conn, testDB, "l1", from.UnixMicro(), th)
			if err != nil {
				t.Fatal(err)
			}
			compareWindow(t, fmt.Sprintf("%s, window from %s", what, from.Format(time.TimeOnly)), gw, ww, rows)
		}
	}
	compact := func(now time.Time) analytics.CompactResult {
		t.Helper()
		res, err := analytics.Compact(ctx, conn, testDB, "l1", now, 0)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	check("nothing sealed")
	if res := compact(start.Add(10 * time.Minute)); res.Sealed != 10 {
		t.Fatalf("compaction %+v", res)
	}
	check("half sealed")
	compact(start.Add(13*time.Minute + 30*time.Second))
	check("sealed to the middle of a minute")
	time.Sleep(1100 * time.Millisecond) // a later inserted_at
	redelivered := rows[len(rows)/3 : len(rows)/3+2000]
	if err := analytics.Insert(ctx, conn, testDB, redelivered); err != nil {
		t.Fatal(err)
	}
	check("a batch stored twice, before resealing")
	if res := compact(start.Add(10 * time.Minute)); res.Resealed == 0 {
		t.Fatalf("compaction after the redelivery %+v", res)
	}
	check("a batch stored twice, resealed")
	compact(start.Add(time.Hour))
	check("all sealed")
	assertFewAggregateRows(t, ctx, conn, len(rows))
}

// assertFewAggregateRows: the aggregates are far fewer rows than the pairs.
func assertFewAggregateRows(t *testing.T, ctx context.Context, conn driver.Conn, pairs int) {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT (SELECT count() FROM "+testDB+".pair_counts) + (SELECT count() FROM "+testDB+".diff_counts)").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n*10 > uint64(pairs) {
		t.Fatalf("%d aggregate rows for %d pairs", n, pairs)
	}
}

// openTestDB starts a private clickhouse-server and returns the test's
// context and a connection to testDB with the schema applied, closed when
// the test ends.
func openTestDB(t *testing.T) (context.Context, driver.Conn) {
	t.Helper()
	ctx := testenv.Context(t)
	conn, err := analytics.Connect(ctx, config.ClickHouse{ClickHouseAddr: testenv.StartClickHouse(t), ClickHouseDatabase: testDB, ClickHouseUser: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return ctx, conn
}
