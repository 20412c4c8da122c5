package launch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Ramp steps a launch's sample percentage up on evidence: the reporter's
// controller moves to the next step once the current one has been held for
// its Hold and the launch's gates pass on the pairs compared during it.
type Ramp struct {
	// Steps are the shadow sample percentages, strictly increasing, e.g.
	// 1% for 5m, 10% for 10m, 50% for 30m, 100% for 1h. A ramp may have
	// none when it only carries LiveSteps (a launch steered by hand whose
	// promotion is stepped).
	Steps []Step `json:"steps"`
	// AutoPromote promotes the launch once its last step passed: at once
	// (100% of live traffic), or stepped through LiveSteps.
	AutoPromote bool `json:"auto_promote"`
	// AutoRollback rolls the launch back as soon as a gate fails.
	AutoRollback bool `json:"auto_rollback"`
	// LiveSteps are the promotion's live traffic percentages, e.g.
	// [{10, 10m}, {50, 10m}, {100, 0s}]; empty means 100% at once. After the
	// last one's hold the launch is promoted (100%).
	LiveSteps []Step `json:"live_steps,omitempty"`
}

// Step is one step of a ramp: a percentage held for a while.
type Step struct {
	Percent float64  `json:"percent"`
	Hold    Duration `json:"hold"`

	// holdErr keeps a hold that did not parse, so that Normalize reports it
	// with the step's place (ramp.steps[2].hold) as a validation error.
	holdErr error
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string: "5m", "1h30m", "1.5s", "0s".
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d without the zero units time.Duration.String keeps
// ("5m" rather than "5m0s").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "5m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	v, err := parseDuration(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	*d = v
	return nil
}

func parseDuration(b []byte) (Duration, error) {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, fmt.Errorf("%s is not a duration string such as \"5m\" or \"1h30m\"", b)
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"5m\" or \"1h30m\"", s)
	}
	return Duration(v), nil
}

// UnmarshalJSON reads a step; a hold that is not a duration string is kept
// as an error for Normalize, which names the step. Unknown fields are
// refused, as the API refuses them everywhere else.
func (s *Step) UnmarshalJSON(b []byte) error {
	var raw struct {
		Percent float64         `json:"percent"`
		Hold    json.RawMessage `json:"hold"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("ramp step: %w", err)
	}
	*s = Step{Percent: raw.Percent}
	if len(raw.Hold) > 0 && !bytes.Equal(raw.Hold, []byte("null")) {
		s.Hold, s.holdErr = parseDuration(raw.Hold)
	}
	return nil
}

// LatencyRatio bounds the shadow's latency quantiles over the primary's,
// measured on the same requests.
type LatencyRatio struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Gates are the thresholds a launch's verdict applies. A zero field means
// its default (DefaultGates): set a tiny positive value (1e-9) to demand no
// mismatch or error at all.
type Gates struct {
	// MinPairs is the least number of compared pairs in the window (the
	// current step) before the verdict is anything but inconclusive.
	MinPairs int `json:"min_pairs"`
	// MaxMismatchRate bounds the noise-filtered mismatch rate.
	MaxMismatchRate float64 `json:"max_mismatch_rate"`
	// MaxErrorRateDelta bounds the shadow's error rate (5xx answers and
	// transport failures) minus the primary's 5xx rate, on the same requests.
	MaxErrorRateDelta float64 `json:"max_error_rate_delta"`
	// MaxLatencyRatio bounds shadow/primary latency quantiles.
	MaxLatencyRatio LatencyRatio `json:"max_latency_ratio"`
	// Alpha is the level of the sequential latency test.
	Alpha float64 `json:"alpha"`
	// MinLatencyDeltaMS is an absolute floor under the latency ratios: a
	// quantile's ratio does not fail while the shadow is slower than its
	// control by less than this many milliseconds there (on a
	// sub-millisecond endpoint a 0.1 ms gap is a large ratio and no
	// regression).
	MinLatencyDeltaMS float64 `json:"min_latency_delta_ms"`
}

// DefaultGates are the thresholds of a launch that sets none.
var DefaultGates = Gates{
	MinPairs:          100,
	MaxMismatchRate:   0.01,
	MaxErrorRateDelta: 0.01,
	MaxLatencyRatio:   LatencyRatio{P50: 1.2, P95: 1.5, P99: 2.0},
	Alpha:             0.01,
	MinLatencyDeltaMS: 1,
}

// WithDefaults returns g with every zero threshold replaced by its default.
func (g Gates) WithDefaults() Gates {
	d := DefaultGates
	if g.MinPairs != 0 {
		d.MinPairs = g.MinPairs
	}
	if g.MaxMismatchRate != 0 {
		d.MaxMismatchRate = g.MaxMismatchRate
	}
	if g.MaxErrorRateDelta != 0 {
		d.MaxErrorRateDelta = g.MaxErrorRateDelta
	}
	if g.MaxLatencyRatio.P50 != 0 {
		d.MaxLatencyRatio.P50 = g.MaxLatencyRatio.P50
	}
	if g.MaxLatencyRatio.P95 != 0 {
		d.MaxLatencyRatio.P95 = g.MaxLatencyRatio.P95
	}
	if g.MaxLatencyRatio.P99 != 0 {
		d.MaxLatencyRatio.P99 = g.MaxLatencyRatio.P99
	}
	if g.Alpha != 0 {
		d.Alpha = g.Alpha
	}
	if g.MinLatencyDeltaMS != 0 {
		d.MinLatencyDeltaMS = g.MinLatencyDeltaMS
	}
	return d
}

// Bounds of ramps and gates: generous, but they keep a typo (a hold of
// "500h", ten thousand steps) from passing silently.
const (
	maxSteps    = 50
	maxHold     = 30 * 24 * time.Hour
	maxMinPairs = 100_000_000
	maxRatio    = 1000
	// maxLatencyDeltaMS: a floor of a minute would disable the latency
	// gates, which is what a large max_latency_ratio is for.
	maxLatencyDeltaMS = 60_000
)

// CurrentStep returns the step the launch is at: a shadow step while it is
// active or paused, a live step while it is promoting; ok is false when
// there is none.
func (l *Launch) CurrentStep() (Step, bool) {
	if l.Ramp == nil {
		return Step{}, false
	}
	steps := l.Ramp.Steps
	if l.Status == StatusPromoting {
		steps = l.Ramp.LiveSteps
	}
	if l.RampStep < 0 || l.RampStep >= len(steps) {
		return Step{}, false
	}
	return steps[l.RampStep], true
}

// normalizeRamp validates the ramp, the step index and the gates; errors
// wrap ErrInvalid and name the field.
func (l *Launch) normalizeRamp() error {
	if err := l.Gates.validate(); err != nil {
		return err
	}
	if l.Ramp == nil {
		if l.RampStep != 0 {
			return fmt.Errorf("%w: ramp_step %d without a ramp", ErrInvalid, l.RampStep)
		}
		return nil
	}
	r := l.Ramp
	if len(r.Steps) == 0 && len(r.LiveSteps) == 0 {
		return fmt.Errorf("%w: ramp.steps is empty; a ramp needs steps (or live_steps only, for a stepped promotion)", ErrInvalid)
	}
	if err := validateSteps("ramp.steps", r.Steps); err != nil {
		return err
	}
	if err := validateSteps("ramp.live_steps", r.LiveSteps); err != nil {
		return err
	}
	// The index counts shadow steps while the launch may still mirror, live
	// steps while it is promoting; a finished launch keeps the last one.
	n := len(r.Steps)
	switch l.Status {
	case StatusPromoted, StatusRolledBack:
		return nil
	case StatusPromoting:
		n = len(r.LiveSteps)
	}
	if l.RampStep < 0 || (n > 0 && l.RampStep >= n) || (n == 0 && l.RampStep != 0) {
		return fmt.Errorf("%w: ramp_step %d is not a step of the ramp (%d steps)", ErrInvalid, l.RampStep, n)
	}
	return nil
}

func validateSteps(field string, steps []Step) error {
	if len(steps) > maxSteps {
		return fmt.Errorf("%w: %s has %d steps, at most %d are allowed", ErrInvalid, field, len(steps), maxSteps)
	}
	prev := 0.0
	for i, s := range steps {
		if !(s.Percent > 0 && s.Percent <= 100) {
			return fmt.Errorf("%w: %s[%d].percent %v must be above 0 and at most 100", ErrInvalid, field, i, s.Percent)
		}
		if i > 0 && s.Percent <= prev {
			return fmt.Errorf("%w: %s[%d].percent %v must be above the previous step's %v (steps only go up)", ErrInvalid, field, i, s.Percent, prev)
		}
		prev = s.Percent
		if s.holdErr != nil {
			return fmt.Errorf("%w: %s[%d].hold %w", ErrInvalid, field, i, s.holdErr)
		}
		if s.Hold < 0 || s.Hold.D() > maxHold {
			return fmt.Errorf("%w: %s[%d].hold %s must be from 0s to %s", ErrInvalid, field, i, s.Hold, Duration(maxHold))
		}
	}
	return nil
}

func (g Gates) validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: gates.%s %v must be %s (0: the default)", ErrInvalid, field, v, want)
	}
	if g.MinPairs < 0 || g.MinPairs > maxMinPairs {
		return bad("min_pairs", g.MinPairs, fmt.Sprintf("from 1 to %d", maxMinPairs))
	}
	if !(g.MaxMismatchRate >= 0 && g.MaxMismatchRate <= 1) {
		return bad("max_mismatch_rate", g.MaxMismatchRate, "a rate from 0 to 1")
	}
	if !(g.MaxErrorRateDelta >= 0 && g.MaxErrorRateDelta <= 1) {
		return bad("max_error_rate_delta", g.MaxErrorRateDelta, "a rate from 0 to 1")
	}
	for _, q := range []struct {
		name string
		v    float64
	}{{"p50", g.MaxLatencyRatio.P50}, {"p95", g.MaxLatencyRatio.P95}, {"p99", g.MaxLatencyRatio.P99}} {
		if q.v != 0 && !(q.v >= 1 && q.v <= maxRatio) {
			return bad("max_latency_ratio."+q.name, q.v, fmt.Sprintf("a ratio from 1 to %d", maxRatio))
		}
	}
	if !(g.Alpha >= 0 && g.Alpha <= 0.5) {
		return bad("alpha", g.Alpha, "a level above 0 and at most 0.5")
	}
	if !(g.MinLatencyDeltaMS >= 0 && g.MinLatencyDeltaMS <= maxLatencyDeltaMS) {
		return bad("min_latency_delta_ms", g.MinLatencyDeltaMS, fmt.Sprintf("milliseconds above 0 and at most %d (a tiny value such as 1e-9 judges the ratios alone)", maxLatencyDeltaMS))
	}
	return nil
}
