package reporter_test

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// TestDocsQueriesMatchAPI: the example queries of docs/clickhouse.md
// marked "-- api: <what>" give the numbers the report gives, on a launch
// with suppressed noise, shadow errors, malformed rows and a batch stored
// twice, once everything is sealed.
func TestDocsQueriesMatchAPI(t *testing.T) {
	doc, err := os.ReadFile("../../docs/clickhouse.md")
	if err != nil {
		t.Fatal(err)
	}
	ctx, conn := openTestDB(t)
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rows := shapedRows("l1", start, 20_000, 10, 5)
	if err := analytics.Insert(ctx, conn, testDB, append(rows, shapedRows("l2", start, 500, 10, 6)...)); err != nil {
		t.Fatal(err)
	}
	if err := analytics.Insert(ctx, conn, testDB, rows[:3000]); err != nil { // a redelivery
		t.Fatal(err)
	}
	if _, err := analytics.Compact(ctx, conn, testDB, "l1", start.Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	st, err := reporter.QueryStats(ctx, conn, testDB, "l1", api.NoiseThresholds{MinCount: 5, MinRatio: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Noise.Suppressed) == 0 || st.Totals.Mismatches == st.Totals.RawMismatches || st.Totals.ShadowErrors == 0 {
		t.Fatalf("the launch does not exercise the queries: %+v", st.Totals)
	}
	routes := map[string]api.RouteStats{}
	for _, r := range st.Routes {
		routes[r.Route+" "+r.Method] = r
	}

	queries := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	checked := map[string]bool{}
	for _, q := range queries {
		tag := regexp.MustCompile(`^-- api: ([a-z ]+)\n`).FindStringSubmatch(q[1])
		if tag == nil {
			continue
		}
		sql := strings.ReplaceAll(strings.ReplaceAll(q[1], "<launch id>", "l1"), "darklaunch.", testDB+".")
		res, err := conn.Query(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tag[1], err, sql)
		}
		var got []string
		for res.Next() {
			var line string
			switch tag[1] {
			case "routes raw", "routes":
				var route, method string
				var compared, rawMismatches, shadowErrors uint64
				var extra any
				if tag[1] == "routes raw" {
					var pct float64
					extra = &pct
				} else {
					var ws uint64
					extra = &ws
				}
				if err := res.Scan(&route, &method, &compared, &rawMismatches, &shadowErrors, extra); err != nil {
					t.Fatal(err)
				}
				r := routes[route+" "+method]
				if compared != r.Compared || rawMismatches != r.RawMismatches || shadowErrors != r.ShadowErrors {
					t.Errorf("%s: %s %s compared %d raw %d errors %d; API %+v", tag[1], route, method, compared, rawMismatches, shadowErrors, r)
				}
				if ws, ok := extra.(*uint64); ok && *ws != r.WithSecondary {
					t.Errorf("%s: %s with_secondary %d; API %d", tag[1], route, *ws, r.WithSecondary)
				}
				line = route + " " + method
			case "suppressed":
				var s api.SuppressedPath
				if err := res.Scan(&s.Route, &s.Path, &s.Raw, &s.Noisy); err != nil {
					t.Fatal(err)
				}
				line = fmt.Sprintf("%s %s %d %d", s.Route, s.Path, s.Raw, s.Noisy)
			case "mismatches":
				var route, method string
				var n uint64
				if err := res.Scan(&route, &method, &n); err != nil {
					t.Fatal(err)
				}
				if r := routes[route+" "+method]; n != r.Mismatches {
					t.Errorf("mismatches of %s %s: %d, API %d", route, method, n, r.Mismatches)
				}
				line = route
			case "latency":
				var route, method, side string
				var ms []float64
				if err := res.Scan(&route, &method, &side, &ms); err != nil {
					t.Fatal(err)
				}
				r := routes[route+" "+method]
				want := r.LatencyMS.Primary
				if side == "shadow" {
					want = r.LatencyMS.Shadow
				}
				for i, w := range []float64{want.P50, want.P95, want.P99} {
					if math.Abs(ms[i]-w) > 0.0011 {
						t.Errorf("latency of %s %s %s: %v, API %+v", route, method, side, ms, want)
						break
					}
				}
				line = route + side
			case "secondary latency":
				var route, method string
				var ms []float64
				if err := res.Scan(&route, &method, &ms); err != nil {
					t.Fatal(err)
				}
				want := routes[route+" "+method].LatencyMS.Secondary
				if want == nil {
					t.Fatalf("the API shows no secondary latency of %s %s; SQL %v", route, method, ms)
				}
				for i, w := range []float64{want.P50, want.P95, want.P99} {
					if math.Abs(ms[i]-w) > 0.0011 {
						t.Errorf("secondary latency of %s %s: %v, API %+v", route, method, ms, *want)
						break
					}
				}
				line = route
			default:
				t.Fatalf("unknown tag %q", tag[1])
			}
			got = append(got, line)
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		res.Close()
		checked[tag[1]] = true
		if tag[1] == "suppressed" {
			var want []string
			for _, s := range st.Noise.Suppressed {
				want = append(want, fmt.Sprintf("%s %s %d %d", s.Route, s.Path, s.Raw, s.Noisy))
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("suppressed:\n%s\nAPI:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
		if tag[1] == "routes" && len(got) != len(st.Routes) {
			t.Errorf("routes: %d rows, API %d", len(got), len(st.Routes))
		}
	}
	for _, want := range []string{"routes raw", "routes", "suppressed", "mismatches", "latency", "secondary latency"} {
		if !checked[want] {
			t.Errorf("docs/clickhouse.md has no example query marked -- api: %s", want)
		}
	}
}
