package reporter

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
)

func TestSignTestPValue(t *testing.T) {
	if p := SignTestPValue(0, 0); p != 1 {
		t.Fatalf("no pairs: p = %v", p)
	}
	// Half slower is no evidence at all, nor is a mostly faster shadow;
	// all slower is overwhelming.
	for _, k := range []uint64{0, 10, 50} {
		if p := SignTestPValue(k, 100); p != 1 {
			t.Fatalf("%d of 100: p = %v, want 1", k, p)
		}
	}
	if p := SignTestPValue(100, 100); p > 1e-25 {
		t.Fatalf("100 of 100: p = %v", p)
	}
	// The Bayes factor by hand for k=8, n=10: B(9,3) = 8!2!/11! = 1/495;
	// BF = 1024/495, p = 495/1024.
	if p := SignTestPValue(8, 10); math.Abs(p-495.0/1024) > 1e-12 {
		t.Fatalf("8 of 10: p = %v, want %v", p, 495.0/1024)
	}
	// More slower pairs of the same n: smaller p.
	prev := 1.0
	for k := uint64(500); k <= 700; k += 10 {
		p := SignTestPValue(k, 1000)
		if p > prev {
			t.Fatalf("p(%d of 1000) = %v > p(%d) = %v", k, p, k-10, prev)
		}
		prev = p
	}
	// Large n stays finite (log space).
	if p := SignTestPValue(5_100_000, 10_000_000); p != 0 && (math.IsNaN(p) || p > 1e-6) {
		t.Fatalf("51%% of 10M: p = %v", p)
	}
}

// TestSignTestPolledContinuously is why the verdict uses a sequential test:
// under no regression (each pair slower with probability 1/2), a verdict
// polled after every pair must raise a false alarm at most alpha of the
// time over the whole run. The mSPRT rule (p < alpha and more than half
// slower) does; a fixed-n one-sided z-test at the same level, polled the
// same way, raises many times more.
func TestSignTestPolledContinuously(t *testing.T) {
	const runs, pairs, alpha = 1000, 1000, 0.05
	rng := rand.New(rand.NewPCG(1, 2))
	z := 1.6449 // one-sided 5%
	var msprt, naive int
	for range runs {
		var k uint64
		var hitM, hitN bool
		for n := uint64(1); n <= pairs; n++ {
			if rng.IntN(2) == 0 {
				k++
			}
			if !hitM && 2*k > n && SignTestPValue(k, n) < alpha {
				hitM = true
			}
			if !hitN && n >= 10 && (float64(k)-float64(n)/2)/math.Sqrt(float64(n)/4) > z {
				hitN = true
			}
		}
		if hitM {
			msprt++
		}
		if hitN {
			naive++
		}
	}
	t.Logf("false alarms over %d polls per run, %d runs: mSPRT %d (%.1f%%), fixed-n z-test %d (%.1f%%)",
		pairs, runs, msprt, 100*float64(msprt)/runs, naive, 100*float64(naive)/runs)
	if float64(msprt)/runs > alpha {
		t.Fatalf("mSPRT false alarm rate %.3f over alpha %v", float64(msprt)/runs, alpha)
	}
	if naive < 4*msprt || float64(naive)/runs < 2*alpha {
		t.Fatalf("the fixed-n test polled continuously should inflate false alarms: %d vs %d", naive, msprt)
	}

	// And it has power: a shadow slower on 65% of the pairs is caught
	// within a few hundred pairs.
	caught := 0
	for range 200 {
		var k uint64
		for n := uint64(1); n <= 500; n++ {
			if rng.Float64() < 0.65 {
				k++
			}
			if 2*k > n && SignTestPValue(k, n) < 0.01 {
				caught++
				break
			}
		}
	}
	if caught < 180 {
		t.Fatalf("a 65%% slower shadow caught in %d of 200 runs within 500 pairs", caught)
	}
}

func TestComputeVerdict(t *testing.T) {
	g := launch.Gates{MinPairs: 100}.WithDefaults()
	clean := func() *WindowStats {
		return &WindowStats{Pairs: 1000, Answered: 1000, Slower: 480,
			PrimaryUS: [3]float64{1000, 2000, 3000}, ShadowUS: [3]float64{1010, 2100, 3100}}
	}
	for _, c := range []struct {
		name    string
		change  func(*WindowStats)
		verdict string
		failed  []string // checks not ok
		reason  string
	}{
		{"clean", func(*WindowStats) {}, api.VerdictPass, nil, "all gates pass on 1000 pairs"},
		{"no pairs", func(st *WindowStats) { *st = WindowStats{} }, api.VerdictInconclusive, []string{api.CheckPairs}, "only 0 of the 100 pairs"},
		{"thin data that looks bad is still inconclusive", func(st *WindowStats) {
			st.Pairs, st.Answered, st.Mismatches, st.Slower = 20, 20, 10, 10
		}, api.VerdictInconclusive, []string{api.CheckPairs, api.CheckMismatchRate}, "so far: mismatch_rate 50%"},
		{"mismatches", func(st *WindowStats) { st.Mismatches = 20 }, api.VerdictFail, []string{api.CheckMismatchRate}, "mismatch_rate 2% (20 of 1000 pairs) is above 1%"},
		{"mismatches at the threshold pass", func(st *WindowStats) { st.Mismatches = 10 }, api.VerdictPass, nil, ""},
		{"shadow errors", func(st *WindowStats) { st.ShadowErrors, st.Answered = 30, 970 }, api.VerdictFail, []string{api.CheckErrorRateDelta}, "error_rate_delta 3%"},
		{"errors on both sides cancel", func(st *WindowStats) { st.ShadowErrors, st.PrimaryErrors = 30, 28 }, api.VerdictPass, nil, ""},
		{"slower and over the ratio", func(st *WindowStats) {
			st.Slower = 900
			st.ShadowUS = [3]float64{2500, 2200, 3100}
		}, api.VerdictFail, []string{api.CheckLatencyRatioP50, api.CheckLatencyRegression}, "latency regression: the shadow was slower than the primary on 900 of 1000 pairs"},
		{"sub-millisecond: a large ratio under the absolute floor passes", func(st *WindowStats) {
			st.Slower = 900
			st.PrimaryUS, st.ShadowUS = [3]float64{100, 150, 200}, [3]float64{200, 400, 900}
		}, api.VerdictPass, nil, "under min_latency_delta_ms 1"},
		{"sub-millisecond: over the floor at p99 only fails there", func(st *WindowStats) {
			st.Slower = 900
			st.PrimaryUS, st.ShadowUS = [3]float64{100, 150, 200}, [3]float64{200, 400, 1300}
		}, api.VerdictFail, []string{api.CheckLatencyRatioP99, api.CheckLatencyRegression}, "p99 1.3 ms vs 0.2 ms on the primary"},
		{"with a secondary: the shadow is judged against it, not the primary", func(st *WindowStats) {
			// The mirror times the primary faster than the runner times
			// both runner-side services: against the primary this fails.
			st.Slower = 950
			st.ShadowUS = [3]float64{5000, 8000, 9000}
			st.SecSlower, st.SecFaster, st.SecTied = 480, 500, 20
			st.PairedShadowUS, st.SecondaryUS = [3]float64{5000, 8000, 9000}, [3]float64{4950, 8100, 8800}
		}, api.VerdictPass, nil, "all gates pass"},
		{"with a secondary: a real regression against it fails", func(st *WindowStats) {
			st.SecSlower, st.SecFaster, st.SecTied = 900, 90, 10
			st.PairedShadowUS, st.SecondaryUS = [3]float64{9000, 12000, 15000}, [3]float64{5000, 8000, 9000}
		}, api.VerdictFail, []string{api.CheckLatencyRatioP50, api.CheckLatencyRegression}, "slower than the secondary on 900 of 1000 pairs"},
		{"a secondary on a few pairs only: the primary stays the control", func(st *WindowStats) {
			st.Slower = 900
			st.ShadowUS = [3]float64{2500, 2200, 3100}
			st.SecSlower, st.SecFaster = 10, 300 // 310 of 1000 answered pairs
			st.PairedShadowUS, st.SecondaryUS = [3]float64{1000, 2000, 3000}, [3]float64{1300, 2200, 3100}
		}, api.VerdictFail, []string{api.CheckLatencyRatioP50, api.CheckLatencyRegression}, "slower than the primary"},
		{"slower but within the ratios", func(st *WindowStats) { st.Slower = 900 }, api.VerdictPass, nil, ""},
		{"over the ratio but not significantly slower", func(st *WindowStats) {
			st.Slower = 500
			st.ShadowUS = [3]float64{1000, 2000, 9000}
		}, api.VerdictPass, nil, "the paired test does not show the shadow slower"},
		{"shadow failing everywhere", func(st *WindowStats) {
			st.Answered, st.Slower, st.ShadowErrors = 0, 0, 1000
			st.ShadowUS = [3]float64{}
		}, api.VerdictFail, []string{api.CheckErrorRateDelta}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := clean()
			c.change(st)
			v, reasons, checks := ComputeVerdict(st, g)
			if v != c.verdict {
				t.Fatalf("verdict %s, want %s; reasons %q; checks %+v", v, c.verdict, reasons, checks)
			}
			names := []string{api.CheckPairs, api.CheckMismatchRate, api.CheckErrorRateDelta, api.CheckLatencyRatioP50, api.CheckLatencyRatioP95, api.CheckLatencyRatioP99, api.CheckLatencyRegression}
			if len(checks) != len(names) {
				t.Fatalf("checks %+v", checks)
			}
			var failed []string
			for i, ch := range checks {
				if ch.Name != names[i] || math.IsNaN(ch.Value) || math.IsInf(ch.Value, 0) {
					t.Fatalf("check %d = %+v, want %s with a finite value", i, ch, names[i])
				}
				if !ch.OK {
					failed = append(failed, ch.Name)
				}
			}
			if strings.Join(failed, ",") != strings.Join(c.failed, ",") {
				t.Fatalf("failed checks %v, want %v (%+v)", failed, c.failed, checks)
			}
			if len(reasons) == 0 || (c.reason != "" && !strings.Contains(strings.Join(reasons, " | "), c.reason)) {
				t.Fatalf("reasons %q lack %q", reasons, c.reason)
			}
		})
	}
}

func TestVerdictWindow(t *testing.T) {
	created := mustTime("2026-11-26T06:00:00Z")
	started := mustTime("2026-11-26T06:10:00Z")
	ramp := &launch.Ramp{Steps: []launch.Step{{Percent: 1}, {Percent: 10}}}
	for _, c := range []struct {
		name   string
		l      launch.Launch
		from   string
		stepOK bool
	}{
		{"no ramp: whole launch", launch.Launch{CreatedAt: created, Status: launch.StatusActive}, "06:00", false},
		{"ramp: current step", launch.Launch{CreatedAt: created, Status: launch.StatusActive, Ramp: ramp, RampStep: 1, StepStartedAt: started}, "06:10", true},
		{"paused ramp: current step", launch.Launch{CreatedAt: created, Status: launch.StatusPaused, Ramp: ramp, StepStartedAt: started}, "06:10", true},
		{"promoting: whole launch", launch.Launch{CreatedAt: created, Status: launch.StatusPromoting, Ramp: ramp, StepStartedAt: started}, "06:00", false},
		{"live steps only: whole launch", launch.Launch{CreatedAt: created, Status: launch.StatusActive, Ramp: &launch.Ramp{LiveSteps: []launch.Step{{Percent: 5}}}, StepStartedAt: started}, "06:00", false},
	} {
		from, step := VerdictWindow(&c.l)
		if from.Format("15:04") != c.from || (step != nil) != c.stepOK {
			t.Errorf("%s: window from %s step %v, want %s, step %v", c.name, from, step, c.from, c.stepOK)
		}
		if step != nil && *step != c.l.RampStep {
			t.Errorf("%s: step %d, want %d", c.name, *step, c.l.RampStep)
		}
	}
}

func mustTime(s string) time.Time {
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return ts
}

// side is a live.Side of n requests with errs errors, all taking d.
func side(n, errs uint64, d time.Duration) live.Side {
	s := live.Side{Requests: n, Errors: errs, LatencyBuckets: make([]uint64, live.NumBuckets)}
	s.LatencyBuckets[live.BucketOf(d)] = n
	return s
}

func TestComputeLiveVerdict(t *testing.T) {
	g := launch.Gates{MinPairs: 100}.WithDefaults()
	for _, c := range []struct {
		name        string
		new, prim   live.Side
		verdict     string
		failed      []string
		reasonsHave string
	}{
		{"clean", side(500, 1, 10*time.Millisecond), side(500, 1, 10*time.Millisecond), api.VerdictPass, nil, "all live gates pass"},
		{"too few on one side", side(500, 0, 10*time.Millisecond), side(50, 0, 10*time.Millisecond), api.VerdictInconclusive, []string{api.CheckLiveRequests}, "only 50 of the 100 requests"},
		{"nothing yet", live.Side{}, live.Side{}, api.VerdictInconclusive, []string{api.CheckLiveRequests}, "only 0"},
		{"new version erroring", side(500, 50, 10*time.Millisecond), side(500, 2, 10*time.Millisecond), api.VerdictFail, []string{api.CheckLiveErrorRateDelta}, "live error_rate_delta 9.6%"},
		{"new version slow", side(500, 0, 40*time.Millisecond), side(500, 0, 10*time.Millisecond), api.VerdictFail,
			[]string{api.CheckLiveLatencyRatioP50, api.CheckLiveLatencyRatioP95, api.CheckLiveLatencyRatioP99}, "live latency p50"},
		{"high quantiles need more requests", side(150, 0, 40*time.Millisecond), side(150, 0, 10*time.Millisecond), api.VerdictFail,
			[]string{api.CheckLiveLatencyRatioP50, api.CheckLiveLatencyRatioP95}, "p99 ratio 4.00 is above 2.00, but not judged before 500 requests"},
		{"too few for any quantile", side(120, 0, 40*time.Millisecond), side(9, 0, 10*time.Millisecond), api.VerdictInconclusive,
			[]string{api.CheckLiveRequests}, "not judged before 10 requests"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tot := live.Aggregate([]live.Snapshot{{New: c.new, Primary: c.prim}}, time.Time{})
			v, reasons, checks := ComputeLiveVerdict(tot, g)
			var failed []string
			for _, ch := range checks {
				if !ch.OK {
					failed = append(failed, ch.Name)
				}
			}
			if v != c.verdict || strings.Join(failed, ",") != strings.Join(c.failed, ",") || !strings.Contains(strings.Join(reasons, "|"), c.reasonsHave) {
				t.Fatalf("verdict %s, failed %v, reasons %q; want %s, %v, %q", v, failed, reasons, c.verdict, c.failed, c.reasonsHave)
			}
		})
	}
}
