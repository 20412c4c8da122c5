package live

import (
	"math"
	"time"
)

// Totals are the snapshots of one live step summed over the taps.
type Totals struct {
	// Taps is how many snapshots were summed; Stale how many were left out
	// because they count from before the step (Since earlier than the since
	// given to Aggregate) or are unusable (wrong bucket count).
	Taps, Stale int
	// From is the earliest Since and To the latest At of the summed
	// snapshots (zero when none).
	From, To     time.Time
	New, Primary Side
}

// Aggregate sums the snapshots whose Since is at or after since: the taps
// counting for the current live step. Pass the step's start (the launch's
// step_started_at) less an allowance for clock skew between the taps and
// the writer, shorter than a step's hold: a snapshot counting from before
// is left out whole, since its users were split by another live_percent.
// A tap that has not yet seen the step is left out until it has. The
// result's sides always have NumBuckets latency buckets.
func Aggregate(snaps []Snapshot, since time.Time) Totals {
	t := Totals{
		New:     Side{LatencyBuckets: make([]uint64, NumBuckets)},
		Primary: Side{LatencyBuckets: make([]uint64, NumBuckets)},
	}
	for _, s := range snaps {
		if s.Since.Before(since) || len(s.New.LatencyBuckets) != NumBuckets || len(s.Primary.LatencyBuckets) != NumBuckets {
			t.Stale++
			continue
		}
		t.Taps++
		if t.From.IsZero() || s.Since.Before(t.From) {
			t.From = s.Since
		}
		if s.At.After(t.To) {
			t.To = s.At
		}
		t.New.add(s.New)
		t.Primary.add(s.Primary)
	}
	return t
}

func (s *Side) add(o Side) {
	s.Requests += o.Requests
	s.Errors += o.Errors
	for i, n := range o.LatencyBuckets {
		s.LatencyBuckets[i] += n
	}
}

// Observed is the number of requests with a latency (the histogram's count).
func (s Side) Observed() uint64 {
	var n uint64
	for _, c := range s.LatencyBuckets {
		n += c
	}
	return n
}

// ErrorRate is Errors / Requests, 0 without requests.
func (s Side) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// Quantile estimates the q-quantile (q in [0, 1], clamped) of the side's
// latency in milliseconds from its histogram, as Prometheus'
// histogram_quantile does: the rank q×Observed falls in some bucket, and
// the latencies of that bucket are taken as spread evenly between its
// lower and upper bounds (linear interpolation; the first bucket starts at
// 0). A rank in the +Inf bucket gives its lower bound (10 s), the largest
// finite value the histogram knows. It returns 0 when nothing was observed.
// The error is at most the width of the bucket, a factor of 4/3 at worst.
func (s Side) Quantile(q float64) float64 {
	n := s.Observed()
	if n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(n)
	var cum uint64
	for i, c := range s.LatencyBuckets {
		if c == 0 {
			continue
		}
		before := cum
		cum += c
		if float64(cum) < rank {
			continue
		}
		lower := 0.0
		if i > 0 {
			lower = Bounds[i-1]
		}
		upper := Bounds[i]
		if math.IsInf(upper, 1) {
			return lower
		}
		return lower + (upper-lower)*(rank-float64(before))/float64(c)
	}
	return 0 // not reached: cum == n >= rank
}

// MinRequests is the smaller of the two sides' request counts: a gate
// needs enough of both (at 100% the primary serves none, and the error
// comparison has no control group).
func (t Totals) MinRequests() uint64 { return min(t.New.Requests, t.Primary.Requests) }

// ErrorRateDelta is the new version's error rate minus the primary's.
func (t Totals) ErrorRateDelta() float64 { return t.New.ErrorRate() - t.Primary.ErrorRate() }

// LatencyRatio is the new version's q-quantile latency over the primary's
// (Side.Quantile). It is 0 when either side has no latency observed or the
// primary's quantile is 0 (q = 0).
func (t Totals) LatencyRatio(q float64) float64 {
	n, p := t.New.Quantile(q), t.Primary.Quantile(q)
	if n == 0 || p == 0 {
		return 0
	}
	return n / p
}

// ErrorRateZTest is the two-proportion z-test of "the new version's error
// rate is higher than the primary's": z = (p_new - p_primary) / sqrt(p(1-p)
// (1/n_new + 1/n_primary)) with p the pooled rate, and the one-sided
// p-value P(Z >= z) under the normal approximation. The samples are
// unpaired: each side served different users (the sticky split), so this
// compares two independent proportions, unlike the paired shadow data. It
// takes requests as independent, which they are not quite (one user's
// requests are alike), so it overstates the evidence when a few users
// make most of the requests. It is a fixed-sample test: read over and over
// as the counters grow, it raises false alarms above its nominal level
// (see ErrorRateAlwaysValidP). It returns z 0 and p 1 when a side has no
// request or the pooled rate is 0 or 1 (nothing to tell the sides apart).
func (t Totals) ErrorRateZTest() (z, p float64) {
	z, ok := t.errorRateZ()
	if !ok {
		return 0, 1
	}
	return z, 0.5 * math.Erfc(z/math.Sqrt2)
}

// errorRateZ returns the z statistic and whether it is defined.
func (t Totals) errorRateZ() (float64, bool) {
	v, ok := t.pooledVariance()
	if !ok {
		return 0, false
	}
	return t.ErrorRateDelta() / math.Sqrt(v), true
}

// pooledVariance is the variance of p_new - p_primary under "same rate",
// estimated with the pooled rate.
func (t Totals) pooledVariance() (float64, bool) {
	n1, n2 := float64(t.New.Requests), float64(t.Primary.Requests)
	if n1 == 0 || n2 == 0 {
		return 0, false
	}
	p := float64(t.New.Errors+t.Primary.Errors) / (n1 + n2)
	v := p * (1 - p) * (1/n1 + 1/n2)
	return v, v > 0
}

// ErrorRateAlwaysValidP is an always-valid p-value for "the error rates
// differ" (two-sided), from the mixture sequential probability ratio test
// (mSPRT) of Johari, Pekelis and Walsh ("Always valid inference", 2017)
// for the difference of two means under the normal approximation: with
// d = p_new - p_primary, V its pooled variance (as in ErrorRateZTest) and
// a normal mixture N(0, tau²) over the true difference,
//
//	Λ = sqrt(V / (V + tau²)) · exp(tau² d² / (2 V (V + tau²)))
//
// and p = min(1, 1/Λ). Unlike ErrorRateZTest, it stays valid when read
// continuously as the counters grow (Ville's inequality bounds the chance
// that Λ ever reaches 1/alpha by alpha); taking the current value instead
// of the running minimum is conservative. tau is the size of difference
// the test is tuned to find (the gate's max error-rate delta is a good
// choice); tau <= 0 means 0.01. It returns 1 when the variance is not
// defined, as ErrorRateZTest. Combine it with the sign of ErrorRateDelta:
// the test is two-sided. The caveats of ErrorRateZTest about unpaired data
// and correlated requests apply too.
func (t Totals) ErrorRateAlwaysValidP(tau float64) float64 {
	if tau <= 0 {
		tau = 0.01
	}
	v, ok := t.pooledVariance()
	if !ok {
		return 1
	}
	d, t2 := t.ErrorRateDelta(), tau*tau
	logLambda := 0.5*math.Log(v/(v+t2)) + t2*d*d/(2*v*(v+t2))
	if logLambda <= 0 {
		return 1
	}
	return math.Exp(-logLambda)
}
