package analytics

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// synthRows makes n pairs of launch over minutes one-minute buckets from
// start: three routes, diffs with and without per-request noise, shadow
// errors, 5xx answers, a secondary on part of them, malformed arrays.
func synthRows(launch string, start time.Time, n, minutes int, seed uint64) []Row {
	rnd := rand.New(rand.NewPCG(seed, 1))
	routes := []string{"/users/{id}", "/orders", "/items"}
	paths := []string{"$.name", "$.ts", "$.items[*].price", "$.request_id"}
	rows := make([]Row, 0, n)
	for i := range n {
		ts := start.Add(time.Duration(rnd.Int64N(int64(minutes) * int64(time.Minute))))
		r := Row{LaunchID: launch, EnvelopeID: fmt.Sprintf("%s-%06d", launch, i), TS: ts, Route: routes[rnd.IntN(len(routes))],
			Method: []string{"GET", "POST"}[rnd.IntN(2)], PrimaryStatus: 200, ShadowStatus: 200,
			PrimaryLatencyUS: uint64(500 + rnd.IntN(20000)), ShadowLatencyUS: uint64(500 + rnd.IntN(25000)), Match: true,
			HasSecondary: rnd.IntN(3) > 0}
		if rnd.IntN(10) == 0 {
			r.ShadowLatencyUS = r.PrimaryLatencyUS // tied
		}
		if r.HasSecondary {
			r.SecondaryStatus, r.SecondaryLatencyUS = 200, uint64(500+rnd.IntN(20000))
			if rnd.IntN(10) == 0 {
				r.SecondaryLatencyUS = r.ShadowLatencyUS // tied
			}
		} else if rnd.IntN(4) == 0 { // a secondary that failed
			r.SecondaryError, r.SecondaryLatencyUS = "connection refused", uint64(rnd.IntN(100))
		}
		if rnd.IntN(20) == 0 {
			r.PrimaryStatus = 503
		}
		switch k := rnd.IntN(10); {
		case k == 0:
			r.Match, r.ShadowStatus, r.ShadowError, r.ShadowErrorKind = false, 0, "timeout", "timeout"
			if rnd.IntN(2) == 0 {
				r.DiffPaths, r.DiffKinds = []string{"$"}, []string{"missing"}
			}
		case k == 1:
			r.ShadowStatus = 500
			r.Match, r.DiffPaths, r.DiffKinds, r.DiffGeneralized, r.DiffNoise = false, []string{"status"}, []string{"status"}, []string{"status"}, []bool{false}
		case k <= 5:
			r.Match = false
			np := 1 + rnd.IntN(3)
			for j := range np {
				p := paths[(j+rnd.IntN(len(paths)))%len(paths)]
				r.DiffPaths = append(r.DiffPaths, strings.ReplaceAll(p, "[*]", fmt.Sprintf("[%d]", rnd.IntN(3))))
				r.DiffGeneralized = append(r.DiffGeneralized, p)
				r.DiffKinds = append(r.DiffKinds, "value_changed")
				r.DiffNoise = append(r.DiffNoise, r.HasSecondary && (p == "$.ts" || p == "$.request_id") && rnd.IntN(5) > 0)
			}
			switch rnd.IntN(20) {
			case 0: // an old row: no generalized paths, no noise flags
				r.DiffGeneralized, r.DiffNoise = nil, nil
			case 1: // a bad row: kinds do not pair with paths
				r.DiffKinds = r.DiffKinds[:len(r.DiffKinds)-1]
			case 2: // a mismatch without recorded paths
				r.DiffPaths, r.DiffGeneralized, r.DiffKinds, r.DiffNoise = nil, nil, nil, nil
			}
			var real []string
			for j, p := range r.DiffGeneralized {
				if !r.DiffNoise[j] {
					k := ""
					if j < len(r.DiffKinds) {
						k = r.DiffKinds[j]
					}
					real = append(real, p+"|"+k)
				}
			}
			if len(real) > 0 {
				slices.Sort(real)
				r.Fingerprint = fmt.Sprintf("fp-%s-%s", r.Route, strings.Join(slices.Compact(real), ","))
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// pairKey is a PairGroup's identity.
func pairKey(g PairGroup) string {
	return fmt.Sprintf("%s|%s|%v|%s|%q|%v", g.Route, g.Method, g.RawMismatch, g.Fingerprint, g.RealPaths, g.NoPaths)
}

// refPairs groups rows the way pair_counts does, in Go: the reference.
func refPairs(rows []Row, fromUS int64) map[string]PairGroup {
	out := map[string]PairGroup{}
	for _, r := range rows {
		if r.TS.UnixMicro() < fromUS {
			continue
		}
		g := PairGroup{Route: r.Route, Method: r.Method, RawMismatch: !r.Match && r.ShadowError == ""}
		gen, noise := r.DiffGeneralized, r.DiffNoise
		if len(gen) != len(r.DiffPaths) {
			gen = r.DiffPaths
		}
		if len(noise) != len(r.DiffPaths) {
			noise = make([]bool, len(r.DiffPaths))
		}
		if g.RawMismatch {
			g.Fingerprint = r.Fingerprint
			g.NoPaths = len(r.DiffPaths) == 0
			g.RealPaths = []string{}
			for i, p := range gen {
				if !noise[i] && !slices.Contains(g.RealPaths, p) {
					g.RealPaths = append(g.RealPaths, p)
				}
			}
			slices.Sort(g.RealPaths)
		} else {
			g.RealPaths = []string{}
		}
		k := pairKey(g)
		cur, ok := out[k]
		if !ok {
			cur = g
			cur.FirstUS, cur.LastUS = math.MaxInt64, math.MinInt64
		}
		cur.Compared++
		us := r.TS.UnixMicro()
		cur.FirstUS, cur.LastUS = min(cur.FirstUS, us), max(cur.LastUS, us)
		if fromUS > 0 {
			cur.FirstUS, cur.LastUS = 0, 0
		}
		if r.ShadowError != "" {
			cur.ShadowErrors++
		}
		if r.ShadowError != "" || r.ShadowStatus >= 500 {
			cur.ShadowFailures++
		}
		if r.PrimaryStatus >= 500 {
			cur.PrimaryErrors++
		}
		if r.HasSecondary {
			cur.WithSecondary++
		}
		if r.ShadowError == "" {
			cur.Answered++
			switch {
			case r.ShadowLatencyUS > r.PrimaryLatencyUS:
				cur.Slower++
			case r.ShadowLatencyUS < r.PrimaryLatencyUS:
				cur.Faster++
			default:
				cur.Tied++
			}
			if r.HasSecondary {
				switch {
				case r.ShadowLatencyUS > r.SecondaryLatencyUS:
					cur.SecSlower++
				case r.ShadowLatencyUS < r.SecondaryLatencyUS:
					cur.SecFaster++
				default:
					cur.SecTied++
				}
			}
		}
		out[k] = cur
	}
	return out
}

// refDiffs groups the differences the way diff_counts does.
func refDiffs(rows []Row) map[string]DiffGroup {
	out := map[string]DiffGroup{}
	for _, r := range rows {
		if len(r.DiffPaths) == 0 {
			continue
		}
		a := r.ShadowError == "" && len(r.DiffKinds) == len(r.DiffPaths)
		b := r.HasSecondary && !r.Match && r.ShadowError == ""
		if !a && !b {
			continue
		}
		gen, noise, kinds := r.DiffGeneralized, r.DiffNoise, r.DiffKinds
		if len(gen) != len(r.DiffPaths) {
			gen = r.DiffPaths
		}
		if len(noise) != len(r.DiffPaths) {
			noise = make([]bool, len(r.DiffPaths))
		}
		if len(kinds) != len(r.DiffPaths) {
			kinds = make([]string, len(r.DiffPaths))
		}
		for i := range r.DiffPaths {
			k := r.Route + "|" + gen[i] + "|" + kinds[i]
			g := out[k]
			g.Route, g.Path, g.Kind = r.Route, gen[i], kinds[i]
			if a {
				g.Diffs++
				if noise[i] {
					g.DiffsNoisy++
				}
			}
			if b {
				g.SecDiffs++
				if noise[i] {
					g.SecNoisy++
				}
			}
			out[k] = g
		}
	}
	return out
}

func checkView(t *testing.T, what string, rows []Row, pairs []PairGroup, diffs []DiffGroup, hist, secHist []HistBin, fromUS int64) {
	t.Helper()
	want := refPairs(rows, fromUS)
	got := map[string]PairGroup{}
	for _, g := range pairs {
		g.DiffSet, g.HasDiffSet = nil, false
		if fromUS > 0 { // a window's first and last are not kept exact
			g.FirstUS, g.LastUS = 0, 0
		}
		if g.RealPaths == nil {
			g.RealPaths = []string{}
		}
		got[pairKey(g)] = g
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d pair groups, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		if g := got[k]; fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s: pair group %s\n got %+v\nwant %+v", what, k, g, w)
		}
	}
	if diffs != nil {
		wantD := refDiffs(rows)
		gotD := map[string]DiffGroup{}
		for _, g := range diffs {
			gotD[g.Route+"|"+g.Path+"|"+g.Kind] = g
		}
		if !maps.Equal(gotD, wantD) {
			t.Errorf("%s: diff groups\n got %+v\nwant %+v", what, gotD, wantD)
		}
	}
	// Histograms: counts exact per side; quantiles within 1% of the
	// nearest-rank quantile of the raw latencies (the mean of its 1% bin).
	// The secondary's over the pairs it answered, and over those the
	// shadow answered too, beside the shadow's over the same pairs.
	var prim, shad, sec, secPaired, shadPaired []float64
	for _, r := range rows {
		if r.TS.UnixMicro() < fromUS {
			continue
		}
		prim = append(prim, float64(r.PrimaryLatencyUS))
		if r.ShadowError == "" {
			shad = append(shad, float64(r.ShadowLatencyUS))
		}
		if r.HasSecondary {
			sec = append(sec, float64(r.SecondaryLatencyUS))
			if r.ShadowError == "" {
				secPaired = append(secPaired, float64(r.SecondaryLatencyUS))
				shadPaired = append(shadPaired, float64(r.ShadowLatencyUS))
			}
		}
	}
	hp, hs, hx, hxp, hsp := Histogram{}, Histogram{}, Histogram{}, Histogram{}, Histogram{}
	for _, h := range hist {
		if h.Side == "primary" {
			hp.Add(h.Bin, h.Count)
		} else {
			hs.Add(h.Bin, h.Count)
		}
	}
	for _, h := range secHist {
		switch {
		case h.Side == "secondary":
			hx.Add(h.Bin, h.Count)
			if h.Answered {
				hxp.Add(h.Bin, h.Count)
			}
		case h.Side == "shadow" && h.Answered:
			hsp.Add(h.Bin, h.Count)
		default:
			t.Errorf("%s: a secondary histogram bin of side %q, answered %v", what, h.Side, h.Answered)
		}
	}
	for _, c := range []struct {
		name string
		h    Histogram
		v    []float64
	}{{"primary", hp, prim}, {"shadow", hs, shad}, {"secondary", hx, sec}, {"secondary (both answered)", hxp, secPaired},
		{"shadow (both answered)", hsp, shadPaired}} {
		var n uint64
		for _, x := range c.h {
			n += x.N
		}
		if n != uint64(len(c.v)) {
			t.Errorf("%s: %s histogram holds %d latencies, want %d", what, c.name, n, len(c.v))
		}
		slices.Sort(c.v)
		for _, q := range []float64{0.5, 0.95, 0.99} {
			exact := c.v[int(math.Ceil(q*float64(len(c.v))))-1]
			if got := c.h.Quantile(q); math.Abs(got/exact-1) > 0.01 {
				t.Errorf("%s: %s p%g = %.1f, exact %.1f", what, c.name, 100*q, got, exact)
			}
		}
	}
}

// TestAggregatesExact: the sealed aggregates plus the unsealed tail give
// exactly the groups computed from the deduplicated raw rows, before and
// after sealing, after a batch was inserted twice (sealed and unsealed
// buckets), after a late row lands in a sealed bucket, and for a window
// starting inside a sealed bucket.
func TestAggregatesExact(t *testing.T) {
	ctx, conn := openTestDB(t, "agg", 2)
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rows := synthRows("l1", start, 6000, 10, 1)
	other := synthRows("l2", start, 500, 10, 2)
	if err := Insert(ctx, conn, "agg", append(slices.Clone(rows), other...)); err != nil {
		t.Fatal(err)
	}
	check := func(what string, all []Row, fromUS int64) {
		t.Helper()
		v, err := NewView(ctx, conn, "agg", "l1", fromUS)
		if err != nil {
			t.Fatal(err)
		}
		pairs, err := PairGroups(ctx, conn, "agg", v)
		if err != nil {
			t.Fatal(err)
		}
		var diffs []DiffGroup
		if fromUS == 0 {
			if diffs, err = DiffGroups(ctx, conn, "agg", v); err != nil {
				t.Fatal(err)
			}
		}
		hist, err := Histograms(ctx, conn, "agg", v)
		if err != nil {
			t.Fatal(err)
		}
		secHist, err := SecondaryHistograms(ctx, conn, "agg", v)
		if err != nil {
			t.Fatal(err)
		}
		checkView(t, what, all, pairs, diffs, hist, secHist, fromUS)
	}
	check("nothing sealed", rows, 0)

	// Seal the first six minutes.
	res, err := Compact(ctx, conn, "agg", "l1", start.Add(6*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sealed != 6 || res.Resealed != 0 || res.Pending != 4 {
		t.Fatalf("first compaction: %+v", res)
	}
	check("six minutes sealed", rows, 0)
	// Seal up to 7m30s: minute 6 whole, minute 7 up to the watermark.
	if res, err = Compact(ctx, conn, "agg", "l1", start.Add(7*time.Minute+30*time.Second), 0); err != nil || res.Sealed != 2 || res.Pending != 3 {
		t.Fatalf("compaction to 7m30s: %+v, %v", res, err)
	}
	check("sealed to 7m30s", rows, 0)
	check("sealed to 7m30s, window from 7m10s", rows, start.Add(7*time.Minute+10*time.Second).UnixMicro())

	// A redelivered batch: rows of sealed and of unsealed buckets stored
	// again (later, so with a later inserted_at).
	time.Sleep(1100 * time.Millisecond)
	var again []Row
	for i := 0; i < len(rows); i += 7 {
		again = append(again, rows[i])
	}
	if err := Insert(ctx, conn, "agg", again); err != nil {
		t.Fatal(err)
	}
	check("duplicates before resealing", rows, 0)
	res, err = Compact(ctx, conn, "agg", "l1", start.Add(6*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sealed != 0 || res.Resealed != 6 {
		t.Fatalf("compaction after the redelivery: %+v", res)
	}
	check("duplicates resealed", rows, 0)

	// A late pair in a sealed bucket shows after the next compaction.
	late := synthRows("l1", start.Add(2*time.Minute), 1, 1, 9)
	late[0].EnvelopeID = "l1-late"
	if err := Insert(ctx, conn, "agg", late); err != nil {
		t.Fatal(err)
	}
	rows = append(rows, late...)
	// A check of the last minutes seals minutes 8 and 9 only.
	if res, err = CompactRecent(ctx, conn, "agg", "l1", start.Add(20*time.Minute), 0, start.Add(8*time.Minute+20*time.Second)); err != nil || res.Sealed != 2 || res.Resealed != 0 {
		t.Fatalf("compaction of the last minutes: %+v, %v", res, err)
	}
	// A full one reseals 2 (the late row), 6 (the redelivered rows) and 7
	// (the rest of the minute).
	if res, err = Compact(ctx, conn, "agg", "l1", start.Add(20*time.Minute), 0); err != nil || res.Sealed != 0 || res.Resealed != 3 {
		t.Fatalf("compaction after a late row: %+v, %v", res, err)
	}
	check("all sealed", rows, 0)
	// Nothing changed: nothing to do.
	if res, err = Compact(ctx, conn, "agg", "l1", start.Add(20*time.Minute), 0); err != nil || res.Sealed+res.Resealed != 0 {
		t.Fatalf("idle compaction: %+v, %v", res, err)
	}
	// A window from inside a sealed bucket: its sealed part starts at the
	// next bucket, the partial bucket comes from the raw rows.
	check("window from a minute's first half", rows, start.Add(3*time.Minute+17*time.Second+123456*time.Microsecond).UnixMicro())
	check("window from a minute's second half", rows, start.Add(4*time.Minute+47*time.Second+1*time.Microsecond).UnixMicro())

	// The other launch is untouched by l1's seals.
	v, err := NewView(ctx, conn, "agg", "l2", 0)
	if err != nil || v.Version != 0 {
		t.Fatalf("l2 view %+v, %v", v, err)
	}
}

// TestDropExpired: partitions of months entirely older than the retention
// are dropped, newer ones kept.
func TestDropExpired(t *testing.T) {
	ctx, conn := openTestDB(t, "ret", 1)
	old := synthRows("l", time.Date(2026, 8, 10, 0, 0, 0, 0, time.UTC), 50, 5, 3)
	cur := synthRows("l", time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC), 50, 5, 4)
	for i := range cur {
		cur[i].EnvelopeID += "-nov"
	}
	if err := Insert(ctx, conn, "ret", append(old, cur...)); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	if _, err := Compact(ctx, conn, "ret", "l", now, 0); err != nil {
		t.Fatal(err)
	}
	// 60 days before now is 2026-09-28: August ended before, September not.
	dropped, err := DropExpired(ctx, conn, "ret", now, append(RawTables, AggregateTables...), 60*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"comparisons/202608", "comparisons_by_time/202608", "seals/202608", "pair_counts/202608", "diff_counts/202608", "latency_hist/202608",
		"secondary_latency_hist/202608"}
	if !slices.Equal(dropped, want) {
		t.Fatalf("dropped %v, want %v", dropped, want)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM ret.comparisons").Scan(&n); err != nil || n != 50 {
		t.Fatalf("%d rows left (%v), want 50", n, err)
	}
	if err := conn.QueryRow(ctx, "SELECT sum(compared) FROM ret.pair_counts").Scan(&n); err != nil || n != 50 {
		t.Fatalf("%d pairs left in pair_counts (%v), want 50", n, err)
	}
}

// TestResealOlderSchema: a database sealed before the secondary's
// aggregates existed (seals without schema, pair_counts without the
// shadow-vs-secondary counts, no secondary_latency_hist) migrates, and the
// next compaction seals every bucket again, after which the secondary's
// numbers are exact too.
func TestResealOlderSchema(t *testing.T) {
	ctx, conn := openTestDB(t, "older", 0)
	for _, s := range []string{"CREATE DATABASE older", comparisonsDDL, sealsDDL, pairCountsDDL, diffCountsDDL, latencyHistDDL} {
		if err := conn.Exec(ctx, strings.ReplaceAll(s, "%s", "older")); err != nil {
			t.Fatal(err)
		}
	}
	if err := addColumns(ctx, conn, nil, "older", "comparisons", comparisonsAdded); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rows := synthRows("l", start, 2000, 5, 11)
	if err := Insert(ctx, conn, "older", rows); err != nil {
		t.Fatal(err)
	}
	// The buckets as the previous version sealed them (its seal rows; its
	// aggregate rows do not matter here: every bucket is sealed again).
	if err := conn.Exec(ctx, "INSERT INTO older.seals (launch_id, bucket, version, raw_rows, max_inserted_at, until_us, sealed_at) "+
		"SELECT launch_id, toStartOfMinute(ts) AS b, 1, count(), max(inserted_at), toInt64(b) * 1000000 + 60000000, now() FROM older.comparisons GROUP BY launch_id, b"); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, conn, "older"); err != nil {
		t.Fatal(err)
	}
	res, err := Compact(ctx, conn, "older", "l", start.Add(time.Hour), 0)
	if err != nil || res.Sealed != 0 || res.Resealed != 5 {
		t.Fatalf("first compaction after the upgrade: %+v, %v; want 5 buckets resealed", res, err)
	}
	v, err := NewView(ctx, conn, "older", "l", 0)
	if err != nil {
		t.Fatal(err)
	}
	pairs, err := PairGroups(ctx, conn, "older", v)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := Histograms(ctx, conn, "older", v)
	if err != nil {
		t.Fatal(err)
	}
	secHist, err := SecondaryHistograms(ctx, conn, "older", v)
	if err != nil {
		t.Fatal(err)
	}
	checkView(t, "resealed", rows, pairs, nil, hist, secHist, 0)
	if res, err := Compact(ctx, conn, "older", "l", start.Add(time.Hour), 0); err != nil || res.Sealed+res.Resealed != 0 {
		t.Fatalf("second compaction: %+v, %v; want nothing to do", res, err)
	}
}
