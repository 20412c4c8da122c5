package api

import (
	"time"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// Verdict values.
const (
	VerdictPass         = "pass"
	VerdictFail         = "fail"
	VerdictInconclusive = "inconclusive"
)

// Check names, in the order a verdict lists them.
const (
	CheckPairs             = "pairs"
	CheckMismatchRate      = "mismatch_rate"
	CheckErrorRateDelta    = "error_rate_delta"
	CheckLatencyRatioP50   = "latency_ratio_p50"
	CheckLatencyRatioP95   = "latency_ratio_p95"
	CheckLatencyRatioP99   = "latency_ratio_p99"
	CheckLatencyRegression = "latency_regression"
	// The checks of a promoting launch's verdict, on live traffic.
	CheckLiveRequests        = "live_requests"
	CheckLiveErrorRateDelta  = "live_error_rate_delta"
	CheckLiveLatencyRatioP50 = "live_latency_ratio_p50"
	CheckLiveLatencyRatioP95 = "live_latency_ratio_p95"
	CheckLiveLatencyRatioP99 = "live_latency_ratio_p99"
)

// Window sources.
const (
	SourcePairs = "pairs"
	SourceLive  = "live"
)

// Verdict is the body of GET /v1/launches/{id}/verdict: the launch's gates
// judged on the pairs of its window.
type Verdict struct {
	LaunchID string   `json:"launch_id"`
	Verdict  string   `json:"verdict"`
	Reasons  []string `json:"reasons"`
	Checks   []Check  `json:"checks"`
	Window   Window   `json:"window"`
	// Gates are the thresholds applied (the launch's, defaults filled in).
	Gates launch.Gates `json:"gates"`
	// GeneratedAt is when ClickHouse computed the window's numbers.
	GeneratedAt time.Time `json:"generated_at"`
	// AgeSeconds is how old those numbers are when served (to the
	// millisecond); 0 for a live window (read at each request).
	AgeSeconds float64 `json:"age_seconds"`
}

// Check is one gate: its measured value, its threshold, and whether it
// passes.
type Check struct {
	Name      string  `json:"name"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	OK        bool    `json:"ok"`
}

// Window is the set of pairs a verdict is computed on: those the mirror
// received from From on (the current ramp step's start, or the launch's
// creation).
type Window struct {
	// Source is "pairs" (compared pairs in ClickHouse) or "live" (live
	// traffic as the taps observed it, while promoting).
	Source string    `json:"source"`
	From   time.Time `json:"from"`
	// Pairs are the compared pairs in the window; for a live window, the
	// smaller of the two versions' request counts.
	Pairs uint64 `json:"pairs"`
	// Taps is how many taps' live snapshots were summed (live windows).
	Taps int `json:"taps,omitempty"`
	// Step is the ramp step the window belongs to (absent without a ramp).
	Step *int `json:"step,omitempty"`
	// LatencyControl is what the shadow's latency was compared with:
	// "secondary" (the same old version, timed by the runner like the
	// shadow, on the pairs both answered) when a secondary answered at
	// least half of the pairs the shadow answered, else "primary" (timed
	// by the mirror). Absent for a live window.
	LatencyControl string `json:"latency_control,omitempty"`
}

// Latency controls (Window.LatencyControl).
const (
	ControlPrimary   = "primary"
	ControlSecondary = "secondary"
)

// Check returns the check of that name (e.g. CheckMismatchRate) and
// whether the verdict has it.
func (v *Verdict) Check(name string) (Check, bool) {
	for _, c := range v.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}
