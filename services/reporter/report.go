package reporter

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"golang.org/x/sync/errgroup"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// Report is the body of GET /v1/launches/{id}/report: the launch as it is
// now plus its comparison statistics as of GeneratedAt.
type Report struct {
	Launch *launch.Launch `json:"launch"`
	Stats
}

// Stats are a launch's comparison statistics, computed in ClickHouse.
type Stats struct {
	// GeneratedAt is when ClickHouse computed these numbers (a cached report
	// keeps the time of its computation).
	GeneratedAt time.Time    `json:"generated_at"`
	Totals      Totals       `json:"totals"`
	LatencyMS   Latency      `json:"latency_ms"`
	Routes      []RouteStats `json:"routes"`
	Diffs       []DiffCount  `json:"diffs"`
}

// Totals count the launch's compared pairs.
type Totals struct {
	// Compared is every stored pair, shadow errors included.
	Compared uint64 `json:"compared"`
	// Mismatches are pairs where the shadow answered and its response
	// differed from the primary's.
	Mismatches uint64 `json:"mismatches"`
	// ShadowErrors are pairs where the shadow did not answer (timeout,
	// refused, reset...).
	ShadowErrors uint64 `json:"shadow_errors"`
	// MismatchRate is Mismatches / Compared, 0 when nothing was compared.
	MismatchRate float64 `json:"mismatch_rate"`
	// ShadowErrorRate is ShadowErrors / Compared, 0 when nothing was compared.
	ShadowErrorRate float64 `json:"shadow_error_rate"`
}

// Quantiles are latency quantiles in milliseconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Latency holds the primary's latency over every pair and the shadow's over
// the pairs where it answered.
type Latency struct {
	Primary Quantiles `json:"primary"`
	Shadow  Quantiles `json:"shadow"`
}

// RouteStats are the totals and latencies of one route and method.
type RouteStats struct {
	Route        string  `json:"route"`
	Method       string  `json:"method"`
	Compared     uint64  `json:"compared"`
	Mismatches   uint64  `json:"mismatches"`
	ShadowErrors uint64  `json:"shadow_errors"`
	LatencyMS    Latency `json:"latency_ms"`
}

// DiffCount is how often one JSON path differed in one way.
type DiffCount struct {
	Path  string `json:"path"`
	Kind  string `json:"kind"`
	Count uint64 `json:"count"`
}

// The queries below must run on ClickHouse 18.16 and on current releases:
// no window functions, no server-side query parameters (the `?` is bound by
// clickhouse-go on the client, quoting the value), FINAL so a pair stored
// twice counts once.
//
// Quantiles use `quantiles` (reservoir sampling, 8192 values per group):
// bounded memory however many rows a launch has, and exact (linear
// interpolation between the two nearest values) while a group holds at most
// 8192 rows. quantilesExact would keep every value of every group in memory,
// which for a launch with millions of pairs costs tens of MB per report for
// a precision a latency report does not need.
//
// `match` is quoted: it is also a function name.
const (
	aggregates = "count() AS compared, " +
		"countIf(`match` = 0 AND shadow_error = '') AS mismatches, " +
		"countIf(shadow_error != '') AS shadow_errors, " +
		"quantiles(0.5, 0.95, 0.99)(primary_latency_us / 1000) AS primary_ms, " +
		"quantilesIf(0.5, 0.95, 0.99)(shadow_latency_us / 1000, shadow_error = '') AS shadow_ms"

	totalsQuery = "SELECT " + aggregates + " FROM %s.comparisons FINAL WHERE launch_id = ?"

	routesQuery = "SELECT route, method, " + aggregates +
		" FROM %s.comparisons FINAL WHERE launch_id = ?" +
		" GROUP BY route, method ORDER BY compared DESC, route, method LIMIT %d"

	// Diffs count over the pairs where the shadow answered, like
	// mismatches. The subquery filters before ARRAY JOIN, which fails on the
	// whole query if one row's parallel arrays differ in length; a single bad
	// row must not make every report of its launch fail.
	diffsQuery = "SELECT diff_path, diff_kind, count() AS n FROM (" +
		"SELECT diff_paths, diff_kinds FROM %s.comparisons FINAL" +
		" WHERE launch_id = ? AND shadow_error = '' AND length(diff_paths) = length(diff_kinds) AND length(diff_paths) > 0" +
		") ARRAY JOIN diff_paths AS diff_path, diff_kinds AS diff_kind" +
		" GROUP BY diff_path, diff_kind ORDER BY n DESC, diff_path, diff_kind LIMIT %d"
)

// QueryStats computes a launch's statistics from database.comparisons. The
// database name must be a plain identifier (analytics.Open checks it). A
// launch with no rows gets zeros and empty lists.
func QueryStats(ctx context.Context, conn driver.Conn, database, launchID string) (*Stats, error) {
	st := &Stats{GeneratedAt: time.Now().UTC(), Routes: []RouteStats{}, Diffs: []DiffCount{}}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var primary, shadow []float64
		err := conn.QueryRow(gctx, fmt.Sprintf(totalsQuery, database), launchID).Scan(
			&st.Totals.Compared, &st.Totals.Mismatches, &st.Totals.ShadowErrors, &primary, &shadow)
		if err != nil {
			return fmt.Errorf("totals query: %w", err)
		}
		st.LatencyMS = Latency{Primary: toQuantiles(primary), Shadow: toQuantiles(shadow)}
		if n := st.Totals.Compared; n > 0 {
			st.Totals.MismatchRate = float64(st.Totals.Mismatches) / float64(n)
			st.Totals.ShadowErrorRate = float64(st.Totals.ShadowErrors) / float64(n)
		}
		return nil
	})
	g.Go(func() error {
		routes, err := queryRows(gctx, conn, "routes", fmt.Sprintf(routesQuery, database, maxRoutes), launchID,
			func(rows driver.Rows) (r RouteStats, err error) {
				var primary, shadow []float64
				err = rows.Scan(&r.Route, &r.Method, &r.Compared, &r.Mismatches, &r.ShadowErrors, &primary, &shadow)
				r.LatencyMS = Latency{Primary: toQuantiles(primary), Shadow: toQuantiles(shadow)}
				return r, err
			})
		st.Routes = append(st.Routes, routes...)
		return err
	})
	g.Go(func() error {
		diffs, err := queryRows(gctx, conn, "diffs", fmt.Sprintf(diffsQuery, database, maxDiffs), launchID,
			func(rows driver.Rows) (d DiffCount, err error) {
				err = rows.Scan(&d.Path, &d.Kind, &d.Count)
				return d, err
			})
		st.Diffs = append(st.Diffs, diffs...)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return st, nil
}

// queryRows runs a query of a launch and scans each row with scan; errors
// name the query.
func queryRows[T any](ctx context.Context, conn driver.Conn, name, query, launchID string,
	scan func(driver.Rows) (T, error)) ([]T, error) {
	rows, err := conn.Query(ctx, query, launchID)
	if err != nil {
		return nil, fmt.Errorf("%s query: %w", name, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s query: %w", name, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s query: %w", name, err)
	}
	return out, nil
}

// toQuantiles maps ClickHouse's [p50, p95, p99] to Quantiles. Quantiles of
// an empty set are nan in ClickHouse and JSON cannot encode NaN, so a
// missing or non-finite value becomes 0. Values are rounded to the
// microsecond the data was measured in, dropping float noise.
func toQuantiles(q []float64) Quantiles {
	at := func(i int) float64 {
		if i >= len(q) || math.IsNaN(q[i]) || math.IsInf(q[i], 0) {
			return 0
		}
		return math.Round(q[i]*1000) / 1000
	}
	return Quantiles{P50: at(0), P95: at(1), P99: at(2)}
}
