package reporter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
)

// liveSkew is how much earlier than step_started_at a tap's live snapshot
// may say it started counting and still count for the step: clocks of the
// taps and of the reporter differ a little.
const liveSkew = 500 * time.Millisecond

// WindowStats are the numbers a verdict is computed from; they are what the
// cache keeps, so a change of the gates applies to the next poll.
type WindowStats struct {
	GeneratedAt time.Time `json:"generated_at"`
	FromUS      int64     `json:"from_us"`
	Pairs       uint64    `json:"pairs"`
	// Mismatches are noise-filtered, as the report's.
	Mismatches uint64 `json:"mismatches"`
	// ShadowErrors are pairs whose shadow answered 5xx or not at all;
	// PrimaryErrors those whose primary answered 5xx.
	ShadowErrors  uint64 `json:"shadow_errors"`
	PrimaryErrors uint64 `json:"primary_errors"`
	// Answered are the pairs the shadow answered; Slower those of them where
	// the shadow took longer than the primary.
	Answered uint64 `json:"answered"`
	Slower   uint64 `json:"slower"`
	// Faster and Tied are the other answered pairs (the raw query does
	// not fill them).
	Faster uint64 `json:"faster,omitempty"`
	Tied   uint64 `json:"tied,omitempty"`
	// PrimaryUS and ShadowUS are p50, p95, p99 latencies in microseconds
	// over the answered pairs (both sides over the same requests).
	PrimaryUS [3]float64 `json:"primary_us"`
	ShadowUS  [3]float64 `json:"shadow_us"`
	// SecSlower, SecFaster and SecTied compare the shadow's latency with
	// the secondary's on the pairs both answered; PairedShadowUS and
	// SecondaryUS are the two sides' p50, p95, p99 (µs) over those pairs.
	SecSlower      uint64     `json:"sec_slower,omitempty"`
	SecFaster      uint64     `json:"sec_faster,omitempty"`
	SecTied        uint64     `json:"sec_tied,omitempty"`
	PairedShadowUS [3]float64 `json:"paired_shadow_us"`
	SecondaryUS    [3]float64 `json:"secondary_us"`
}

// SecAnswered are the pairs both the shadow and the secondary answered.
func (st *WindowStats) SecAnswered() uint64 { return st.SecSlower + st.SecFaster + st.SecTied }

// latencyControl is what the verdict compares the shadow's latency with:
// the secondary, on the pairs both answered, when it answered at least
// half of the pairs the shadow answered (the secondary runs the old
// version and is timed by the runner at the same moment as the shadow,
// so connection and timing differences between mirror and runner cancel
// out); else the primary, timed by the mirror (see docs/api.md for that
// bias). It returns the control's name, the shadow's and the control's
// quantiles, and the sign test's counts.
func (st *WindowStats) latencyControl() (control string, shadowUS, controlUS [3]float64, slower, answered uint64) {
	if n := st.SecAnswered(); n > 0 && 2*n >= st.Answered {
		return api.ControlSecondary, st.PairedShadowUS, st.SecondaryUS, st.SecSlower, n
	}
	return api.ControlPrimary, st.ShadowUS, st.PrimaryUS, st.Slower, st.Answered
}

// windowQuery computes a window's numbers in one pass. @suppressed is the
// launch's suppressed noise paths, decided over its whole history as in the
// report.
const windowQuery = "SELECT count() AS pairs, " +
	"countIf(" + mismatch + ") AS mismatches, " +
	"countIf(shadow_error != '' OR shadow_status >= 500) AS shadow_errors, " +
	"countIf(primary_status >= 500) AS primary_errors, " +
	"countIf(shadow_error = '') AS answered, " +
	"countIf(shadow_error = '' AND shadow_latency_us > primary_latency_us) AS slower, " +
	"quantilesIf(0.5, 0.95, 0.99)(toFloat64(primary_latency_us), shadow_error = '') AS primary_us, " +
	"quantilesIf(0.5, 0.95, 0.99)(toFloat64(shadow_latency_us), shadow_error = '') AS shadow_us, " +
	"countIf(shadow_error = '' AND has_secondary = 1 AND shadow_latency_us > secondary_latency_us) AS sec_slower, " +
	"countIf(shadow_error = '' AND has_secondary = 1 AND shadow_latency_us < secondary_latency_us) AS sec_faster, " +
	"countIf(shadow_error = '' AND has_secondary = 1 AND shadow_latency_us = secondary_latency_us) AS sec_tied, " +
	"quantilesIf(0.5, 0.95, 0.99)(toFloat64(shadow_latency_us), shadow_error = '' AND has_secondary = 1) AS paired_shadow_us, " +
	"quantilesIf(0.5, 0.95, 0.99)(toFloat64(secondary_latency_us), shadow_error = '' AND has_secondary = 1) AS secondary_us" +
	// ClickHouse 18.16 does not read a column that only a lambda inside
	// an aggregate uses ("Unknown identifier: route", from mismatch);
	// any(route) makes it read it.
	", any(route) AS any_route" +
	" FROM %s.comparisons FINAL WHERE launch_id = @launch AND received_at_us >= @from_us"

// QueryWindowRaw computes the numbers of a launch's pairs received from
// fromUS (Unix microseconds) on from the raw rows: the noise candidates
// over the launch's whole history first (as the report does), then the
// window in one query. It is the reference QueryWindow is tested and
// benchmarked against.
func QueryWindowRaw(ctx context.Context, conn driver.Conn, database, launchID string, fromUS int64, th api.NoiseThresholds) (*WindowStats, error) {
	launchArg := clickhouse.Named("launch", launchID)
	cands, err := analytics.ScanAll(ctx, conn, "noise", fmt.Sprintf(noiseQuery, database, maxSuppressed),
		func(rows driver.Rows) (s api.SuppressedPath, err error) {
			err = rows.Scan(&s.Route, &s.Path, &s.Raw, &s.Noisy)
			return s, err
		}, launchArg, clickhouse.Named("min_count", th.MinCount))
	if err != nil {
		return nil, err
	}
	st := &WindowStats{GeneratedAt: time.Now().UTC(), FromUS: fromUS}
	var primary, shadow, pairedShadow, secondary []float64
	var anyRoute string
	row := conn.QueryRow(ctx, fmt.Sprintf(windowQuery, database), launchArg,
		clickhouse.Named("suppressed", suppressedSet(suppressed(cands, th))), clickhouse.Named("from_us", fromUS))
	if err := row.Scan(&st.Pairs, &st.Mismatches, &st.ShadowErrors, &st.PrimaryErrors, &st.Answered, &st.Slower, &primary, &shadow,
		&st.SecSlower, &st.SecFaster, &st.SecTied, &pairedShadow, &secondary, &anyRoute); err != nil {
		return nil, fmt.Errorf("window query: %w", err)
	}
	for i := range 3 {
		st.PrimaryUS[i], st.ShadowUS[i] = finite(primary, i), finite(shadow, i)
		st.PairedShadowUS[i], st.SecondaryUS[i] = finite(pairedShadow, i), finite(secondary, i)
	}
	return st, nil
}

func finite(q []float64, i int) float64 {
	if i >= len(q) || math.IsNaN(q[i]) || math.IsInf(q[i], 0) {
		return 0
	}
	return q[i]
}

// VerdictWindow is where a launch's verdict window starts: the current
// step's start while a ramped launch is active or paused (the evidence for
// the step it is on), else the launch's creation (its whole history).
func VerdictWindow(l *launch.Launch) (time.Time, *int) {
	if l.Ramp != nil && len(l.Ramp.Steps) > 0 && (l.Status == launch.StatusActive || l.Status == launch.StatusPaused) && !l.StepStartedAt.IsZero() {
		step := l.RampStep
		return l.StepStartedAt, &step
	}
	return l.CreatedAt, nil
}

// SignTestPValue is the always-valid p-value of a mixture sequential
// probability ratio test (mSPRT; Johari, Pekelis, Walsh 2017) that the
// shadow is slower than the primary on more than half of the pairs: k of n
// pairs slower, a Beta(1,1) (uniform) mixture over the alternative's
// probability against 1/2. The Bayes factor is B(1+k, 1+n-k) / B(1,1) /
// 0.5^n, computed in log space; the p-value is min(1, 1/BF). See
// docs/api.md ("The latency test") for why this is valid under continuous
// polling.
//
// It is one-sided: with at most half of the pairs slower there is no
// evidence of a regression and the p-value is 1 (the mixture's Bayes
// factor also grows when the shadow is mostly faster).
func SignTestPValue(k, n uint64) float64 {
	if n == 0 || k > n || 2*k <= n {
		return 1
	}
	a, b := float64(1+k), float64(1+n-k)
	logBF := lbeta(a, b) - lbeta(1, 1) + float64(n)*math.Ln2
	if logBF <= 0 {
		return 1
	}
	return math.Exp(-logBF)
}

func lbeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}

// ComputeVerdict judges a window's numbers against the gates (defaults
// already filled in): inconclusive below min_pairs, fail when any check
// fails, pass otherwise.
func ComputeVerdict(st *WindowStats, g launch.Gates) (verdict string, reasons []string, checks []api.Check) {
	share := func(n uint64) float64 { return rate(n, st.Pairs) }
	mismatchRate := share(st.Mismatches)
	errDelta := share(st.ShadowErrors) - share(st.PrimaryErrors)
	control, shadowUS, controlUS, slower, answered := st.latencyControl()
	p := SignTestPValue(slower, answered)
	slowerShare := rate4(slower, answered)
	significant := p < g.Alpha

	checks = []api.Check{
		{Name: api.CheckPairs, Value: float64(st.Pairs), Threshold: float64(g.MinPairs), OK: st.Pairs >= uint64(g.MinPairs)},
		{Name: api.CheckMismatchRate, Value: round4(mismatchRate), Threshold: g.MaxMismatchRate, OK: mismatchRate <= g.MaxMismatchRate},
		{Name: api.CheckErrorRateDelta, Value: round4(errDelta), Threshold: g.MaxErrorRateDelta, OK: errDelta <= g.MaxErrorRateDelta},
	}
	var fails, notes []string
	if !checks[1].OK {
		fails = append(fails, fmt.Sprintf("mismatch_rate %s (%d of %d pairs) is above %s", fmtRate(mismatchRate), st.Mismatches, st.Pairs, fmtRate(g.MaxMismatchRate)))
	}
	if !checks[2].OK {
		fails = append(fails, fmt.Sprintf("error_rate_delta %s (shadow %d errors, primary %d, of %d pairs) is above %s",
			fmtRate(errDelta), st.ShadowErrors, st.PrimaryErrors, st.Pairs, fmtRate(g.MaxErrorRateDelta)))
	}
	var exceeded, floored []string
	for i, q := range []struct {
		name  string
		label string
		limit float64
	}{
		{api.CheckLatencyRatioP50, "p50", g.MaxLatencyRatio.P50},
		{api.CheckLatencyRatioP95, "p95", g.MaxLatencyRatio.P95},
		{api.CheckLatencyRatioP99, "p99", g.MaxLatencyRatio.P99},
	} {
		ratio := latencyRatio(shadowUS[i], controlUS[i])
		// A ratio over its bound counts only when the shadow is slower
		// there by at least min_latency_delta_ms (a 0.1 ms gap on a
		// sub-millisecond endpoint is a large ratio and no regression),
		// and fails only when the paired test shows the shadow slower:
		// quantiles of a few hundred pairs move a lot from noise alone.
		delta := (shadowUS[i] - controlUS[i]) / 1000
		over := ratio > q.limit && delta >= g.MinLatencyDeltaMS
		checks = append(checks, api.Check{Name: q.name, Value: round4(ratio), Threshold: q.limit, OK: !(over && significant)})
		switch {
		case over:
			exceeded = append(exceeded, fmt.Sprintf("%s %.3g ms vs %.3g ms on the %s (ratio %.2f > %.2f)", q.label, shadowUS[i]/1000, controlUS[i]/1000, control, ratio, q.limit))
		case ratio > q.limit:
			floored = append(floored, fmt.Sprintf("%s ratio %.2f > %.2f, but the shadow is only %.3g ms slower than the %s",
				q.label, ratio, q.limit, delta, control))
		}
	}
	if len(floored) > 0 {
		notes = append(notes, fmt.Sprintf("latency %s (under min_latency_delta_ms %g)", strings.Join(floored, ", "), g.MinLatencyDeltaMS))
	}
	latencyFails := significant && len(exceeded) > 0
	checks = append(checks, api.Check{Name: api.CheckLatencyRegression, Value: roundP(p), Threshold: g.Alpha, OK: !latencyFails})
	switch {
	case latencyFails:
		fails = append(fails, fmt.Sprintf("latency regression: the shadow was slower than the %s on %d of %d pairs (%s; always-valid p = %.3g < alpha %g) and %s",
			control, slower, answered, fmtRate(slowerShare), p, g.Alpha, strings.Join(exceeded, ", ")))
	case len(exceeded) > 0:
		notes = append(notes, fmt.Sprintf("latency %s, but the paired test does not show the shadow slower than the %s (slower on %d of %d pairs, p = %.3g, alpha %g)",
			strings.Join(exceeded, ", "), control, slower, answered, p, g.Alpha))
	}

	switch {
	case st.Pairs < uint64(g.MinPairs):
		verdict = api.VerdictInconclusive
		reasons = append(reasons, fmt.Sprintf("only %d of the %d pairs needed have been compared in the window", st.Pairs, g.MinPairs))
		for _, f := range fails {
			reasons = append(reasons, "so far: "+f)
		}
	case len(fails) > 0:
		verdict = api.VerdictFail
		reasons = fails
	default:
		verdict = api.VerdictPass
		reasons = append(reasons, fmt.Sprintf("all gates pass on %d pairs", st.Pairs))
	}
	return verdict, append(reasons, notes...), checks
}

// latencyRatio is shadow/primary; a primary quantile of 0 (no pairs, or a
// sub-microsecond answer) counts as 1 µs.
func latencyRatio(shadow, primary float64) float64 {
	if shadow <= 0 && primary <= 0 {
		return 1
	}
	return shadow / math.Max(primary, 1)
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

func rate4(n, of uint64) float64 { return round4(rate(n, of)) }

// roundP keeps 4 significant digits of a p-value (they get very small).
func roundP(p float64) float64 {
	if p == 0 || p == 1 {
		return p
	}
	e := math.Pow(10, math.Floor(math.Log10(p))-3)
	return math.Round(p/e) * e
}

func fmtRate(r float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", 100*r), "0"), ".0") + "%"
}

// verdictFor computes a launch's verdict: on live traffic while it is
// promoting (sourceMiss), else from its window's compared pairs (kept in
// memory and Redis and shared by concurrent polls, like the report; the
// string says where the numbers came from).
func (s *Service) verdictFor(ctx context.Context, l *launch.Launch) (*api.Verdict, string, error) {
	if l.Status == launch.StatusPromoting {
		v, err := s.liveVerdict(ctx, l)
		return v, sourceMiss, err
	}
	from, step := VerdictWindow(l)
	st, _, source, err := cached(s, ctx, verdictCacheKey(l.ID, from.UnixMicro()), s.metrics.verdictQueries, windowCodec,
		func(qctx context.Context, conn driver.Conn) (*WindowStats, time.Time, error) {
			st, err := QueryWindow(qctx, conn, s.cfg.ClickHouseDatabase, l.ID, from.UnixMicro(), s.noise())
			if err != nil {
				return nil, time.Time{}, err
			}
			return st, st.GeneratedAt, nil
		})
	if err != nil {
		return nil, "", fmt.Errorf("compute verdict of launch %s: %w", l.ID, err)
	}
	g := l.Gates.WithDefaults()
	control, _, _, _, _ := st.latencyControl()
	v := &api.Verdict{LaunchID: l.ID, Gates: g, GeneratedAt: st.GeneratedAt, AgeSeconds: ageSeconds(st.GeneratedAt),
		Window: api.Window{Source: api.SourcePairs, From: from.UTC(), Pairs: st.Pairs, Step: step, LatencyControl: control}}
	v.Verdict, v.Reasons, v.Checks = ComputeVerdict(st, g)
	return v, source, nil
}

// liveVerdict judges a promoting launch on the live traffic of its current
// live step, as the taps observed it (their snapshots in the NATS KV bucket
// darklaunch_live).
func (s *Service) liveVerdict(ctx context.Context, l *launch.Launch) (*api.Verdict, error) {
	kv := s.liveKV.Load()
	if kv == nil {
		return nil, fmt.Errorf("%w: the live bucket %s is not open yet", errNotReady, live.Bucket)
	}
	snaps, err := live.Read(ctx, *kv, l.ID)
	if err != nil && !errors.Is(err, live.ErrMalformed) {
		return nil, fmt.Errorf("live verdict of launch %s: %w", l.ID, err)
	}
	if err != nil {
		s.log.Warn("live snapshots left out", "launch_id", l.ID, "err", err)
	}
	from := l.StepStartedAt.Add(-liveSkew)
	t := live.Aggregate(snaps, from)
	g := l.Gates.WithDefaults()
	step := l.RampStep
	v := &api.Verdict{LaunchID: l.ID, Gates: g, GeneratedAt: time.Now().UTC(),
		Window: api.Window{Source: api.SourceLive, From: l.StepStartedAt.UTC(), Pairs: t.MinRequests(), Taps: t.Taps, Step: &step}}
	v.Verdict, v.Reasons, v.Checks = ComputeLiveVerdict(t, g)
	return v, nil
}

// ComputeLiveVerdict judges live totals against the gates: inconclusive
// until both versions served min_pairs requests in the step, fail when the
// new version's error rate exceeds the primary's by more than
// max_error_rate_delta or a latency quantile ratio exceeds its bound, pass
// otherwise. The two sides served different users (the sticky split), so
// nothing is paired here: the thresholds apply to the step's totals.
func ComputeLiveVerdict(t live.Totals, g launch.Gates) (verdict string, reasons []string, checks []api.Check) {
	n := t.MinRequests()
	delta := t.ErrorRateDelta()
	checks = []api.Check{
		{Name: api.CheckLiveRequests, Value: float64(n), Threshold: float64(g.MinPairs), OK: n >= uint64(g.MinPairs)},
		{Name: api.CheckLiveErrorRateDelta, Value: round4(delta), Threshold: g.MaxErrorRateDelta, OK: delta <= g.MaxErrorRateDelta},
	}
	var fails, notes []string
	if !checks[1].OK {
		fails = append(fails, fmt.Sprintf("live error_rate_delta %s (new version %d errors of %d requests, primary %d of %d; always-valid p %.3g) is above %s",
			fmtRate(delta), t.New.Errors, t.New.Requests, t.Primary.Errors, t.Primary.Requests,
			t.ErrorRateAlwaysValidP(g.MaxErrorRateDelta), fmtRate(g.MaxErrorRateDelta)))
	}
	for _, q := range []struct {
		name  string
		q     float64
		limit float64
	}{
		{api.CheckLiveLatencyRatioP50, 0.5, g.MaxLatencyRatio.P50},
		{api.CheckLiveLatencyRatioP95, 0.95, g.MaxLatencyRatio.P95},
		{api.CheckLiveLatencyRatioP99, 0.99, g.MaxLatencyRatio.P99},
	} {
		ratio := t.LatencyRatio(q.q) // 0 when a side observed nothing
		// A quantile is judged only once each side has at least 5
		// observations above it (10 for p50, 100 for p95, 500 for p99):
		// below that it is one of the few slowest requests, noise.
		need := uint64(math.Ceil(5 / (1 - q.q)))
		enough := min(t.New.Observed(), t.Primary.Observed()) >= need
		ok := ratio <= q.limit || !enough
		checks = append(checks, api.Check{Name: q.name, Value: round4(ratio), Threshold: q.limit, OK: ok})
		switch {
		case !ok:
			fails = append(fails, fmt.Sprintf("live latency p%g %.3g ms vs %.3g ms on the primary (ratio %.2f > %.2f)",
				100*q.q, t.New.Quantile(q.q), t.Primary.Quantile(q.q), ratio, q.limit))
		case ratio > q.limit:
			notes = append(notes, fmt.Sprintf("live latency p%g ratio %.2f is above %.2f, but not judged before %d requests with a latency on each version",
				100*q.q, ratio, q.limit, need))
		}
	}
	switch {
	case n < uint64(g.MinPairs):
		verdict = api.VerdictInconclusive
		reasons = append(reasons, fmt.Sprintf("only %d of the %d requests needed on each version in this live step (new version %d, primary %d, from %d taps)",
			n, g.MinPairs, t.New.Requests, t.Primary.Requests, t.Taps))
		for _, f := range fails {
			reasons = append(reasons, "so far: "+f)
		}
	case len(fails) > 0:
		verdict, reasons = api.VerdictFail, fails
	default:
		verdict = api.VerdictPass
		reasons = append(reasons, fmt.Sprintf("all live gates pass on %d requests of the new version and %d of the primary", t.New.Requests, t.Primary.Requests))
	}
	return verdict, append(reasons, notes...), checks
}

func verdictCacheKey(launchID string, fromUS int64) string {
	return fmt.Sprintf("%s%s:%d", verdictKeyPrefix, launchID, fromUS)
}
