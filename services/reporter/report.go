package reporter

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"golang.org/x/sync/errgroup"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
)

// The queries below must run on ClickHouse 18.16 and on current releases:
// no window functions, no server-side query parameters (@name is bound by
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
// Rows written before diff_generalized and diff_noise existed hold empty
// arrays there, and one bad row may hold arrays of another length than
// diff_paths: genExpr and noiseExpr fall back to the paths and to "not
// noise", so every array the lambdas and ARRAY JOINs see has the length of
// diff_paths (ClickHouse fails the whole query on unequal arrays, and one
// bad row must not fail every report of its launch). kindsExpr does the
// same for diff_kinds where it is read beside them.
//
// `match` is quoted: it is also a function name.
const (
	genExpr   = "if(length(diff_generalized) = length(diff_paths), diff_generalized, diff_paths)"
	noiseExpr = "if(length(diff_noise) = length(diff_paths), diff_noise, arrayMap(dp -> toUInt8(0), diff_paths))"
	kindsExpr = "if(length(diff_kinds) = length(diff_paths), diff_kinds, arrayMap(dp -> '', diff_paths))"

	// rawMismatch: the shadow answered and something differed.
	rawMismatch = "(`match` = 0 AND shadow_error = '')"
	// mismatch: a raw mismatch with a difference that is neither noise in
	// its request nor at a suppressed path. @suppressed holds
	// "route\tgeneralized path" strings and never is empty (ClickHouse
	// 18.16 cannot type has([], x)). A mismatch without recorded paths
	// has nothing to call noise and counts.
	mismatch = "(" + rawMismatch + " AND (length(diff_paths) = 0 OR arrayExists((dg, dn) -> dn = 0 AND NOT has(@suppressed, concat(route, '\\t', dg)), " +
		genExpr + ", " + noiseExpr + ")))"

	// noiseQuery: per (route, generalized path), differences and noisy ones
	// over the pairs the secondary answered; only candidates with enough
	// noisy ones, most noisy (relatively) first, so the suppressed ones are
	// a prefix of the answer whatever the limit.
	noiseQuery = "SELECT route, gpath, count() AS raw, sum(flag) AS noisy FROM (" +
		"SELECT route, " + genExpr + " AS gpaths, " + noiseExpr + " AS flags FROM %s.comparisons FINAL" +
		" WHERE launch_id = @launch AND has_secondary = 1 AND " + rawMismatch + " AND length(diff_paths) > 0" +
		") ARRAY JOIN gpaths AS gpath, flags AS flag" +
		" GROUP BY route, gpath HAVING noisy >= @min_count" +
		" ORDER BY noisy / raw DESC, noisy DESC, route, gpath LIMIT %d"

	// Diffs count over the pairs where the shadow answered, like
	// mismatches; a row whose kinds do not pair with its paths is left out.
	diffsQuery = "SELECT gpath, kind, count() AS n, sum(flag) AS noisy FROM (" +
		"SELECT " + genExpr + " AS gpaths, diff_kinds, " + noiseExpr + " AS flags FROM %s.comparisons FINAL" +
		" WHERE launch_id = @launch AND shadow_error = '' AND length(diff_paths) = length(diff_kinds) AND length(diff_paths) > 0" +
		") ARRAY JOIN gpaths AS gpath, diff_kinds AS kind, flags AS flag" +
		" GROUP BY gpath, kind ORDER BY n DESC, gpath, kind LIMIT %d"

	// routesQuery gives the routes and, in its WITH TOTALS row, the
	// launch's totals (computed over every route, before the LIMIT).
	routesQuery = "SELECT route, method, count() AS compared, " +
		"countIf(" + mismatch + ") AS mismatches, " +
		"countIf(shadow_error != '') AS shadow_errors, " +
		"countIf(" + rawMismatch + ") AS raw_mismatches, " +
		"countIf(has_secondary = 1) AS with_secondary, " +
		"quantiles(0.5, 0.95, 0.99)(primary_latency_us / 1000) AS primary_ms, " +
		"quantilesIf(0.5, 0.95, 0.99)(shadow_latency_us / 1000, shadow_error = '') AS shadow_ms, " +
		"quantilesIf(0.5, 0.95, 0.99)(secondary_latency_us / 1000, has_secondary = 1) AS secondary_ms" +
		" FROM %s.comparisons FINAL WHERE launch_id = @launch" +
		" GROUP BY route, method WITH TOTALS ORDER BY compared DESC, route, method LIMIT %d"

	// classesQuery: mismatches by fingerprint (the classes whose every
	// difference is noise are left out), with the route's pair count for
	// the share and the stored examples' ids. 18.16 allows one JOIN per
	// SELECT, hence the nesting; an alias must not be a column's name,
	// which ClickHouse would substitute in WHERE. A class's diffs are the same in each of
	// its rows (the fingerprint hashes them), so anyIf picks any
	// well-formed row's.
	classesQuery = "SELECT fingerprint, croute, n, first_us, last_us, diffset, route_total, examples FROM (" +
		"SELECT * FROM (" +
		"SELECT fingerprint, any(route) AS croute, count() AS n, min(received_at_us) AS first_us, max(received_at_us) AS last_us, " +
		"anyIf(arraySort(arrayDistinct(arrayFilter((dk, dn) -> dn = 0, arrayMap((dg, k) -> concat(dg, '\\t', k), " + genExpr + ", " + kindsExpr + "), " + noiseExpr + "))), " +
		"length(diff_kinds) = length(diff_paths)) AS diffset" +
		" FROM %[1]s.comparisons FINAL WHERE launch_id = @launch AND fingerprint != '' AND " + mismatch +
		" GROUP BY fingerprint ORDER BY n DESC, fingerprint LIMIT %[2]d" +
		") ANY LEFT JOIN (" +
		"SELECT route AS croute, count() AS route_total FROM %[1]s.comparisons FINAL WHERE launch_id = @launch GROUP BY route" +
		") USING croute" +
		") ANY LEFT JOIN (" +
		"SELECT fingerprint, arraySort(groupArray(envelope_id)) AS examples FROM %[1]s.examples FINAL WHERE launch_id = @launch GROUP BY fingerprint" +
		") USING fingerprint ORDER BY n DESC, fingerprint"
)

// QueryStatsRaw computes a launch's statistics from the raw rows of
// database.comparisons (with FINAL) and database.examples in two rounds of
// concurrent queries. It is the reference the aggregate-based QueryStats
// is tested and benchmarked against, not what the API serves: the noise
// candidates and the diffs, then (with the suppressed paths decided here)
// the routes with the totals and the diff classes. The database name must
// be a plain identifier (analytics.Open checks it). A launch with no rows
// gets zeros and empty lists.
func QueryStatsRaw(ctx context.Context, conn driver.Conn, database, launchID string, th api.NoiseThresholds) (*api.Stats, error) {
	st := &api.Stats{GeneratedAt: time.Now().UTC(), Routes: []api.RouteStats{}, Diffs: []api.DiffCount{},
		Noise: api.Noise{NoiseThresholds: th, Suppressed: []api.SuppressedPath{}}, Classes: []api.DiffClass{},
		Audit: []api.AuditEntry{}}
	launchArg := clickhouse.Named("launch", launchID)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		cands, err := analytics.ScanAll(gctx, conn, "noise", fmt.Sprintf(noiseQuery, database, maxSuppressed),
			func(rows driver.Rows) (s api.SuppressedPath, err error) {
				err = rows.Scan(&s.Route, &s.Path, &s.Raw, &s.Noisy)
				return s, err
			}, launchArg, clickhouse.Named("min_count", th.MinCount))
		st.Noise.Suppressed = append(st.Noise.Suppressed, suppressed(cands, th)...)
		return err
	})
	g.Go(func() error {
		diffs, err := analytics.ScanAll(gctx, conn, "diffs", fmt.Sprintf(diffsQuery, database, maxDiffs),
			func(rows driver.Rows) (d api.DiffCount, err error) {
				err = rows.Scan(&d.Path, &d.Kind, &d.Count, &d.Noisy)
				return d, err
			}, launchArg)
		st.Diffs = append(st.Diffs, diffs...)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}

	set := suppressedSet(st.Noise.Suppressed)
	args := []any{launchArg, clickhouse.Named("suppressed", set)}
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error {
		routes, totals, err := queryRoutes(gctx, conn, fmt.Sprintf(routesQuery, database, maxRoutes), args)
		st.Routes = append(st.Routes, routes...)
		if err != nil {
			return err
		}
		st.Totals = api.Totals{Compared: totals.Compared, Mismatches: totals.Mismatches, ShadowErrors: totals.ShadowErrors,
			RawMismatches: totals.RawMismatches, WithSecondary: totals.WithSecondary}
		st.Totals.MismatchRate = rate(st.Totals.Mismatches, st.Totals.Compared)
		st.Totals.RawMismatchRate = rate(st.Totals.RawMismatches, st.Totals.Compared)
		st.Totals.ShadowErrorRate = rate(st.Totals.ShadowErrors, st.Totals.Compared)
		st.LatencyMS = totals.LatencyMS
		return nil
	})
	g.Go(func() error {
		classes, err := analytics.ScanAll(gctx, conn, "classes", fmt.Sprintf(classesQuery, database, maxClasses),
			func(rows driver.Rows) (c api.DiffClass, err error) {
				var firstUS, lastUS int64
				var diffset []string
				var routeTotal uint64
				err = rows.Scan(&c.Fingerprint, &c.Route, &c.Count, &firstUS, &lastUS, &diffset, &routeTotal, &c.Examples)
				c.FirstSeen, c.LastSeen = time.UnixMicro(firstUS).UTC(), time.UnixMicro(lastUS).UTC()
				c.Diffs = pathKinds(diffset)
				c.ShareOfRoute = rate(c.Count, routeTotal)
				if c.Examples == nil {
					c.Examples = []string{}
				}
				return c, err
			}, args...)
		st.Classes = append(st.Classes, classes...)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return st, nil
}

// queryRoutes runs routesQuery: the routes, and the totals row.
func queryRoutes(ctx context.Context, conn driver.Conn, query string, args []any) ([]api.RouteStats, api.RouteStats, error) {
	var totals api.RouteStats
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, totals, fmt.Errorf("routes query: %w", err)
	}
	defer rows.Close()
	scan := func(r *api.RouteStats, scan func(...any) error) error {
		var primary, shadow, secondary []float64
		err := scan(&r.Route, &r.Method, &r.Compared, &r.Mismatches, &r.ShadowErrors, &r.RawMismatches, &r.WithSecondary, &primary, &shadow, &secondary)
		r.LatencyMS = api.Latency{Primary: toQuantiles(primary), Shadow: toQuantiles(shadow)}
		if r.WithSecondary > 0 {
			q := toQuantiles(secondary)
			r.LatencyMS.Secondary = &q
		}
		return err
	}
	var out []api.RouteStats
	for rows.Next() {
		var r api.RouteStats
		if err := scan(&r, rows.Scan); err != nil {
			return nil, totals, fmt.Errorf("routes query: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, totals, fmt.Errorf("routes query: %w", err)
	}
	// The totals block comes after the rows. Without rows some servers
	// send none: the totals are then zeros.
	if err := scan(&totals, rows.Totals); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, totals, fmt.Errorf("routes query totals: %w", err)
	}
	return out, totals, nil
}

// suppressed keeps the candidates the thresholds suppress and explains
// each.
func suppressed(cands []api.SuppressedPath, th api.NoiseThresholds) []api.SuppressedPath {
	var out []api.SuppressedPath
	for _, c := range cands {
		if !th.Suppresses(c.Raw, c.Noisy) {
			continue
		}
		c.Ratio = math.Round(float64(c.Noisy)/float64(c.Raw)*1e4) / 1e4
		c.Reason = fmt.Sprintf("noisy in %d of %d differences (%s) between primary and secondary; suppressed from %d noisy and %s",
			c.Noisy, c.Raw, percent(float64(c.Noisy)/float64(c.Raw)), th.MinCount, percent(th.MinRatio))
		out = append(out, c)
	}
	return out
}

// suppressedSet is the @suppressed array: "route\tpath" per suppressed
// path, after an empty string that matches nothing (concat(route, '\t',
// path) is never empty) so the array is never empty.
func suppressedSet(s []api.SuppressedPath) []string {
	set := make([]string, 0, len(s)+1)
	set = append(set, "")
	for _, p := range s {
		set = append(set, p.Route+"\t"+p.Path)
	}
	return set
}

// pathKinds splits "path\tkind" strings.
func pathKinds(set []string) []api.PathKind {
	out := make([]api.PathKind, 0, len(set))
	for _, s := range set {
		p, k, _ := strings.Cut(s, "\t")
		out = append(out, api.PathKind{Path: p, Kind: k})
	}
	slices.SortFunc(out, func(a, b api.PathKind) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Kind, b.Kind)
	})
	return out
}

func percent(r float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", 100*r), "0"), ".") + "%"
}

func rate(n, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// toQuantiles maps ClickHouse's [p50, p95, p99] to Quantiles. Quantiles of
// an empty set are nan in ClickHouse and JSON cannot encode NaN, so a
// missing or non-finite value becomes 0. Values are rounded to the
// microsecond the data was measured in, dropping float noise.
func toQuantiles(q []float64) api.Quantiles {
	at := func(i int) float64 {
		if i >= len(q) || math.IsNaN(q[i]) || math.IsInf(q[i], 0) {
			return 0
		}
		return math.Round(q[i]*1000) / 1000
	}
	return api.Quantiles{P50: at(0), P95: at(1), P99: at(2)}
}
