package reporter

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"golang.org/x/sync/errgroup"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
)

// The report and the verdict window are computed from the launch's
// pre-aggregated buckets (analytics.Compact seals them) plus the same
// aggregation over the rows not sealed yet: a few thousand aggregate rows
// instead of every comparison row. The counts equal those of the raw rows
// (QueryStatsRaw, QueryWindowRaw) exactly; the latency quantiles come from
// histograms with 1% bins and are within 1% of the exact nearest-rank
// quantile (docs/api.md).

// QueryStats computes a launch's statistics: one seal version read, then
// the pair groups, the difference counts, the latency histograms and the
// stored examples' ids in concurrent queries; the noise decision, the
// mismatch counts, routes, totals and classes are derived from them here.
// A launch with no rows gets zeros and empty lists.
func QueryStats(ctx context.Context, conn driver.Conn, database, launchID string, th api.NoiseThresholds) (*api.Stats, error) {
	st := &api.Stats{GeneratedAt: time.Now().UTC(), Routes: []api.RouteStats{}, Diffs: []api.DiffCount{},
		Noise: api.Noise{NoiseThresholds: th, Suppressed: []api.SuppressedPath{}}, Classes: []api.DiffClass{},
		Audit: []api.AuditEntry{}}
	v, err := analytics.NewView(ctx, conn, database, launchID, 0)
	if err != nil {
		return nil, err
	}
	var (
		pairs    []analytics.PairGroup
		diffs    []analytics.DiffGroup
		hist     []analytics.HistBin
		secHist  []analytics.HistBin
		examples map[string][]string
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { pairs, err = analytics.PairGroups(gctx, conn, database, v); return err })
	g.Go(func() (err error) { diffs, err = analytics.DiffGroups(gctx, conn, database, v); return err })
	g.Go(func() (err error) { hist, err = analytics.Histograms(gctx, conn, database, v); return err })
	g.Go(func() (err error) { secHist, err = analytics.SecondaryHistograms(gctx, conn, database, v); return err })
	g.Go(func() (err error) { examples, err = exampleIDs(gctx, conn, database, launchID); return err })
	if err := g.Wait(); err != nil {
		return nil, err
	}

	st.Noise.Suppressed = append(st.Noise.Suppressed, suppressed(noiseCandidates(diffs, th), th)...)
	st.Diffs = append(st.Diffs, diffCounts(diffs)...)
	set := suppressedLookup(st.Noise.Suppressed)

	type rm struct{ route, method string }
	routes := map[rm]*api.RouteStats{}
	routeTotal := map[string]uint64{}
	classes := map[string]*api.DiffClass{}
	classUS := map[string][2]int64{}
	for _, p := range pairs {
		k := rm{p.Route, p.Method}
		r := routes[k]
		if r == nil {
			r = &api.RouteStats{Route: p.Route, Method: p.Method}
			routes[k] = r
		}
		r.Compared += p.Compared
		r.ShadowErrors += p.ShadowErrors
		r.WithSecondary += p.WithSecondary
		routeTotal[p.Route] += p.Compared
		if !p.RawMismatch {
			continue
		}
		r.RawMismatches += p.Compared
		if !isMismatch(p, set) {
			continue
		}
		r.Mismatches += p.Compared
		if p.Fingerprint == "" {
			continue
		}
		c := classes[p.Fingerprint]
		if c == nil {
			c = &api.DiffClass{Fingerprint: p.Fingerprint, Route: p.Route, Diffs: []api.PathKind{}}
			classes[p.Fingerprint] = c
			classUS[p.Fingerprint] = [2]int64{math.MaxInt64, math.MinInt64}
		}
		c.Count += p.Compared
		us := classUS[p.Fingerprint]
		classUS[p.Fingerprint] = [2]int64{min(us[0], p.FirstUS), max(us[1], p.LastUS)}
		if p.HasDiffSet && len(c.Diffs) == 0 {
			c.Diffs = pathKinds(p.DiffSet)
		}
	}

	type rms struct {
		rm
		side string
	}
	hists := map[rms]analytics.Histogram{}
	all := map[string]analytics.Histogram{"primary": {}, "shadow": {}, "secondary": {}}
	add := func(h analytics.HistBin) {
		k := rms{rm{h.Route, h.Method}, h.Side}
		if hists[k] == nil {
			hists[k] = analytics.Histogram{}
		}
		hists[k].Add(h.Bin, h.Count)
		all[h.Side].Add(h.Bin, h.Count)
	}
	for _, h := range hist {
		add(h)
	}
	for _, h := range secHist {
		if h.Side == "secondary" { // over every pair the secondary answered
			add(h)
		}
	}
	for k, r := range routes {
		r.LatencyMS = api.Latency{Primary: msQuantiles(hists[rms{k, "primary"}]), Shadow: msQuantiles(hists[rms{k, "shadow"}]),
			Secondary: secondaryQuantiles(hists[rms{k, "secondary"}])}
		st.Totals.Compared += r.Compared
		st.Totals.Mismatches += r.Mismatches
		st.Totals.ShadowErrors += r.ShadowErrors
		st.Totals.RawMismatches += r.RawMismatches
		st.Totals.WithSecondary += r.WithSecondary
		st.Routes = append(st.Routes, *r)
	}
	st.Totals.MismatchRate = rate(st.Totals.Mismatches, st.Totals.Compared)
	st.Totals.RawMismatchRate = rate(st.Totals.RawMismatches, st.Totals.Compared)
	st.Totals.ShadowErrorRate = rate(st.Totals.ShadowErrors, st.Totals.Compared)
	st.LatencyMS = api.Latency{Primary: msQuantiles(all["primary"]), Shadow: msQuantiles(all["shadow"]), Secondary: secondaryQuantiles(all["secondary"])}
	slices.SortFunc(st.Routes, func(a, b api.RouteStats) int {
		return cmp.Or(cmp.Compare(b.Compared, a.Compared), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method))
	})
	st.Routes = st.Routes[:min(len(st.Routes), maxRoutes)]

	for fp, c := range classes {
		us := classUS[fp]
		c.FirstSeen, c.LastSeen = time.UnixMicro(us[0]).UTC(), time.UnixMicro(us[1]).UTC()
		c.ShareOfRoute = rate(c.Count, routeTotal[c.Route])
		c.Examples = examples[fp]
		if c.Examples == nil {
			c.Examples = []string{}
		}
		st.Classes = append(st.Classes, *c)
	}
	slices.SortFunc(st.Classes, func(a, b api.DiffClass) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Fingerprint, b.Fingerprint))
	})
	st.Classes = st.Classes[:min(len(st.Classes), maxClasses)]
	return st, nil
}

// QueryWindow computes the numbers of a launch's pairs received from
// fromUS (Unix microseconds) on: the noise decision over the launch's
// whole history (as the report's), the window's pair groups and its
// latency histograms over the pairs the shadow answered, and over those
// the secondary answered too (shadow and secondary).
func QueryWindow(ctx context.Context, conn driver.Conn, database, launchID string, fromUS int64, th api.NoiseThresholds) (*WindowStats, error) {
	all, err := analytics.NewView(ctx, conn, database, launchID, 0)
	if err != nil {
		return nil, err
	}
	win := all
	win.FromUS = fromUS
	var (
		pairs []analytics.PairGroup
		diffs []analytics.DiffGroup
		hist  []analytics.HistBin
		sec   []analytics.HistBin
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { diffs, err = analytics.DiffGroups(gctx, conn, database, all); return err })
	g.Go(func() (err error) { pairs, err = analytics.PairGroups(gctx, conn, database, win); return err })
	g.Go(func() (err error) { hist, err = analytics.Histograms(gctx, conn, database, win); return err })
	g.Go(func() (err error) { sec, err = analytics.SecondaryHistograms(gctx, conn, database, win); return err })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	set := suppressedLookup(suppressed(noiseCandidates(diffs, th), th))
	st := &WindowStats{GeneratedAt: time.Now().UTC(), FromUS: fromUS}
	for _, p := range pairs {
		st.Pairs += p.Compared
		st.ShadowErrors += p.ShadowFailures
		st.PrimaryErrors += p.PrimaryErrors
		st.Answered += p.Answered
		st.Slower += p.Slower
		st.Faster += p.Faster
		st.Tied += p.Tied
		st.SecSlower += p.SecSlower
		st.SecFaster += p.SecFaster
		st.SecTied += p.SecTied
		if p.RawMismatch && isMismatch(p, set) {
			st.Mismatches += p.Compared
		}
	}
	primary, shadow := analytics.Histogram{}, analytics.Histogram{}
	for _, h := range hist {
		switch {
		case !h.Answered:
		case h.Side == "primary":
			primary.Add(h.Bin, h.Count)
		default:
			shadow.Add(h.Bin, h.Count)
		}
	}
	pairedShadow, secondary := analytics.Histogram{}, analytics.Histogram{}
	for _, h := range sec {
		switch {
		case !h.Answered:
		case h.Side == "secondary":
			secondary.Add(h.Bin, h.Count)
		default:
			pairedShadow.Add(h.Bin, h.Count)
		}
	}
	for i, q := range []float64{0.5, 0.95, 0.99} {
		st.PrimaryUS[i], st.ShadowUS[i] = primary.Quantile(q), shadow.Quantile(q)
		st.PairedShadowUS[i], st.SecondaryUS[i] = pairedShadow.Quantile(q), secondary.Quantile(q)
	}
	return st, nil
}

// isMismatch: a raw mismatch with a difference that is neither noise in
// its request nor at a suppressed path; without recorded paths it counts.
func isMismatch(p analytics.PairGroup, suppressed map[string]bool) bool {
	if p.NoPaths {
		return true
	}
	for _, path := range p.RealPaths {
		if !suppressed[p.Route+"\t"+path] {
			return true
		}
	}
	return false
}

// noiseCandidates are the (route, generalized path) with at least
// th.MinCount noisy differences over the raw mismatches the secondary
// answered, most noisy (relatively) first, at most maxSuppressed.
func noiseCandidates(diffs []analytics.DiffGroup, th api.NoiseThresholds) []api.SuppressedPath {
	type rp struct{ route, path string }
	var out []api.SuppressedPath
	for _, s := range sumBy(diffs, func(d analytics.DiffGroup) (rp, bool) { return rp{d.Route, d.Path}, d.SecDiffs > 0 },
		func(s *api.SuppressedPath, d analytics.DiffGroup) {
			s.Route, s.Path = d.Route, d.Path
			s.Raw += d.SecDiffs
			s.Noisy += d.SecNoisy
		}) {
		if s.Noisy >= th.MinCount {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b api.SuppressedPath) int {
		// noisy/raw descending, compared exactly.
		return cmp.Or(cmp.Compare(b.Noisy*a.Raw, a.Noisy*b.Raw), cmp.Compare(b.Noisy, a.Noisy),
			cmp.Compare(a.Route, b.Route), cmp.Compare(a.Path, b.Path))
	})
	return out[:min(len(out), maxSuppressed)]
}

// diffCounts are the report's diffs: per (generalized path, kind) over
// the pairs the shadow answered, most frequent first, at most maxDiffs.
func diffCounts(diffs []analytics.DiffGroup) []api.DiffCount {
	type pk struct{ path, kind string }
	out := sumBy(diffs, func(d analytics.DiffGroup) (pk, bool) { return pk{d.Path, d.Kind}, d.Diffs > 0 },
		func(c *api.DiffCount, d analytics.DiffGroup) {
			c.Path, c.Kind = d.Path, d.Kind
			c.Count += d.Diffs
			c.Noisy += d.DiffsNoisy
		})
	slices.SortFunc(out, func(a, b api.DiffCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Kind, b.Kind))
	})
	return out[:min(len(out), maxDiffs)]
}

func suppressedLookup(s []api.SuppressedPath) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, p := range s {
		m[p.Route+"\t"+p.Path] = true
	}
	return m
}

// msQuantiles are a histogram's p50, p95, p99 in milliseconds, rounded to
// the microsecond.
func msQuantiles(h analytics.Histogram) api.Quantiles {
	q := func(l float64) float64 { return math.Round(h.Quantile(l)) / 1000 }
	return api.Quantiles{P50: q(0.5), P95: q(0.95), P99: q(0.99)}
}

// secondaryQuantiles are msQuantiles, or nil for an empty histogram (no
// secondary answered).
func secondaryQuantiles(h analytics.Histogram) *api.Quantiles {
	if len(h) == 0 {
		return nil
	}
	q := msQuantiles(h)
	return &q
}

// exampleIDs are the envelope ids of the launch's stored examples per
// diff class.
func exampleIDs(ctx context.Context, conn driver.Conn, database, launchID string) (map[string][]string, error) {
	type ex struct {
		fp  string
		ids []string
	}
	rows, err := analytics.ScanAll(ctx, conn, "examples",
		"SELECT fingerprint, arraySort(groupArray(envelope_id)) FROM "+database+".examples FINAL WHERE launch_id = @launch GROUP BY fingerprint",
		func(rows driver.Rows) (e ex, err error) {
			err = rows.Scan(&e.fp, &e.ids)
			return e, err
		}, clickhouse.Named("launch", launchID))
	m := make(map[string][]string, len(rows))
	for _, e := range rows {
		m[e.fp] = e.ids
	}
	return m, err
}

// sumBy adds up items by key: key says an item's group and whether it
// counts at all, add adds it into its group's value (zero at first). The
// groups come back in no particular order.
func sumBy[T any, K comparable, V any](items []T, key func(T) (K, bool), add func(*V, T)) []V {
	idx := map[K]int{}
	var out []V
	for _, it := range items {
		k, ok := key(it)
		if !ok {
			continue
		}
		i, seen := idx[k]
		if !seen {
			i = len(out)
			idx[k] = i
			out = append(out, *new(V))
		}
		add(&out[i], it)
	}
	return out
}
