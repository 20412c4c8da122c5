package mirror

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/pkg/live"
)

// Live versions, the values of the version label of the live_* metrics.
const (
	// VersionNew: the request was served by the launch's new version
	// (shadow_url).
	VersionNew = "new"
	// VersionPrimary: the request was eligible for the launch (its path
	// passes the filters) but its user is outside live_percent, so the
	// primary served it. It is the control group the new version is judged
	// against.
	VersionPrimary = "primary"
)

const (
	armNew = iota
	armPrimary
	numArms
)

var armNames = [numArms]string{VersionNew, VersionPrimary}

// Response classes counted per live version, the class label of
// darklaunch_mirror_live_responses_total and the keys of VersionStats.Status.
// ClassError counts requests that got no response from the version
// (refused, reset, timed out: the client got a 502); a client that went
// away first is not counted against the version.
const ClassError = "error"

const (
	numStatusClasses = 5 // 1xx .. 5xx
	classError       = numStatusClasses
	numClasses       = numStatusClasses + 1
)

var classNames = [numClasses]string{"1xx", "2xx", "3xx", "4xx", "5xx", ClassError}

// latencyBounds are the live latency histogram's upper bounds, as for
// primary_latency_seconds: 100µs to 13 s, doubling.
var latencyBounds = prometheus.ExponentialBuckets(0.0001, 2, numLatencyBounds)

const numLatencyBounds = 18

// versionStats counts what one version of a live launch served during one
// live step. Plain atomics: the request path only adds, and LiveStats, the
// live reports and the Prometheus collector read the same numbers.
type versionStats struct {
	requests atomic.Uint64
	classes  [numClasses]atomic.Uint64
	latency  [numLatencyBounds + 1]atomic.Uint64 // per bucket, not cumulative
	sumNS    atomic.Uint64
	// live counts latency over live.Bounds (milliseconds), per bucket, for
	// the live reports the promotion gates are judged on.
	live [live.NumBuckets]atomic.Uint64
}

func (v *versionStats) status(code int) {
	c := code/100 - 1
	if c < 0 || c >= numStatusClasses {
		c = numStatusClasses - 1 // not a valid HTTP status: as bad as a 5xx
	}
	v.classes[c].Add(1)
}

func (v *versionStats) observe(d time.Duration) {
	sec := d.Seconds()
	i, _ := slices.BinarySearch(latencyBounds, sec) // first bound >= sec
	v.latency[i].Add(1)
	v.live[live.BucketOf(d)].Add(1)
	v.sumNS.Add(uint64(max(d, 0)))
}

// liveStep is one live_percent step of a launch on this tap: the counters
// start at zero when live_percent changes, because users then move from the
// primary to the new version and the two sides no longer hold the same
// users as before.
type liveStep struct {
	percent float64
	since   time.Time
	arms    [numArms]versionStats
}

// liveStats are one launch's live counters, one liveStep per live_percent
// the tap has routed by. They outlive the launch's live period, so that the
// last values stay readable after a promotion or a rollback. Old steps are
// kept: requests routed by an old step may still be in flight, and the
// Prometheus counters sum all steps so that they never go down.
type liveStats struct {
	id    string
	mu    sync.Mutex
	steps []*liveStep // the last one is current; never empty
}

// current returns the launch's current step.
func (ls *liveStats) current() *liveStep {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.steps[len(ls.steps)-1]
}

// allSteps returns every step of the launch.
func (ls *liveStats) allSteps() []*liveStep {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return slices.Clone(ls.steps)
}

// liveRegistry holds the live counters of every launch the tap has routed
// live traffic for since it started.
type liveRegistry struct {
	mu sync.Mutex
	m  map[string]*liveStats
}

// step returns the launch's step for live_percent percent: the current one
// when it has that percent, otherwise a new one counting from now.
func (r *liveRegistry) step(id string, percent float64, now time.Time) (*liveStats, *liveStep) {
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]*liveStats{}
	}
	ls := r.m[id]
	if ls == nil {
		ls = &liveStats{id: id}
		r.m[id] = ls
	}
	r.mu.Unlock()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if n := len(ls.steps); n > 0 && ls.steps[n-1].percent == percent {
		return ls, ls.steps[n-1]
	}
	st := &liveStep{percent: percent, since: now}
	ls.steps = append(ls.steps, st)
	return ls, st
}

func (r *liveRegistry) all() []*liveStats {
	r.mu.Lock()
	out := make([]*liveStats, 0, len(r.m))
	for _, ls := range r.m {
		out = append(out, ls)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *liveStats) int { return strings.Compare(a.id, b.id) })
	return out
}

// LiveStats is what one tap observed of a live launch during its current
// live step: the requests its new version served and, as control group,
// the eligible requests the primary served.
type LiveStats struct {
	LaunchID string
	// LivePercent is the launch's live_percent of the step, and Since when
	// the tap started counting for it: the counters restart when
	// live_percent changes.
	LivePercent float64
	Since       time.Time
	New         VersionStats
	Primary     VersionStats
}

// VersionStats counts the requests one version served through this tap.
type VersionStats struct {
	Requests uint64
	// Status counts responses by class ("1xx" .. "5xx") and requests that
	// got none (ClassError). Requests whose client went away before the
	// response are in Requests only.
	Status map[string]uint64
	// Errors is Status["5xx"] + Status[ClassError], as in live.Side.
	Errors uint64
	// Latency is from receiving the request to the end of the response
	// (the proxy copying the body to the client included). Protocol
	// upgrades and aborted responses are not observed.
	Latency LatencyStats
	// LiveBuckets is the same latency counted per live.Bounds bucket
	// (milliseconds, not cumulative), as published in live reports.
	LiveBuckets []uint64
}

// LatencyStats is a histogram of latencies.
type LatencyStats struct {
	Count uint64
	Sum   time.Duration
	// Buckets are cumulative counts per upper bound; the last bound is
	// +Inf (math.Inf(1) seconds).
	Buckets []LatencyBucket
}

// LatencyBucket is one cumulative histogram bucket.
type LatencyBucket struct {
	UpperBoundSeconds float64
	Count             uint64
}

// LiveStats returns the current live step's counters of every launch this
// tap has routed live traffic for since it started, by launch id.
func (s *Service) LiveStats() []LiveStats {
	var out []LiveStats
	for _, ls := range s.live.all() {
		out = append(out, ls.stats())
	}
	return out
}

func (ls *liveStats) stats() LiveStats {
	st := ls.current()
	var n, p versionCounts
	n.add(&st.arms[armNew])
	p.add(&st.arms[armPrimary])
	return LiveStats{LaunchID: ls.id, LivePercent: st.percent, Since: st.since, New: n.stats(), Primary: p.stats()}
}

// Snapshot is the live report of these counters as tapID publishes it.
func (ls LiveStats) Snapshot(tapID string, at time.Time) live.Snapshot {
	side := func(v VersionStats) live.Side {
		return live.Side{Requests: v.Requests, Errors: v.Errors, LatencyBuckets: slices.Clone(v.LiveBuckets)}
	}
	return live.Snapshot{
		V: live.Version, LaunchID: ls.LaunchID, TapID: tapID, At: at.UTC(), Since: ls.Since.UTC(),
		LivePercent: ls.LivePercent, New: side(ls.New), Primary: side(ls.Primary),
	}
}

// versionCounts are versionStats loaded (and possibly summed over steps).
type versionCounts struct {
	requests, sumNS uint64
	classes         [numClasses]uint64
	latency         [numLatencyBounds + 1]uint64
	live            [live.NumBuckets]uint64
}

func (c *versionCounts) add(v *versionStats) {
	c.requests += v.requests.Load()
	c.sumNS += v.sumNS.Load()
	for i := range c.classes {
		c.classes[i] += v.classes[i].Load()
	}
	for i := range c.latency {
		c.latency[i] += v.latency[i].Load()
	}
	for i := range c.live {
		c.live[i] += v.live[i].Load()
	}
}

func (c *versionCounts) stats() VersionStats {
	st := VersionStats{
		Requests:    c.requests,
		Status:      make(map[string]uint64, numClasses),
		Errors:      c.classes[numStatusClasses-1] + c.classes[classError],
		LiveBuckets: slices.Clone(c.live[:]),
	}
	for i, name := range classNames {
		st.Status[name] = c.classes[i]
	}
	count, cum := c.histogram()
	st.Latency = LatencyStats{Count: count, Sum: time.Duration(c.sumNS)}
	for _, b := range latencyBounds {
		st.Latency.Buckets = append(st.Latency.Buckets, LatencyBucket{UpperBoundSeconds: b, Count: cum[b]})
	}
	st.Latency.Buckets = append(st.Latency.Buckets, LatencyBucket{UpperBoundSeconds: math.Inf(1), Count: count})
	return st
}

// histogram returns the count and the cumulative counts per bound.
func (c *versionCounts) histogram() (uint64, map[float64]uint64) {
	cum := make(map[float64]uint64, len(latencyBounds))
	var n uint64
	for i, b := range latencyBounds {
		n += c.latency[i]
		cum[b] = n
	}
	n += c.latency[numLatencyBounds]
	return n, cum
}

// liveCollector exports the live counters with launch and version labels.
type liveCollector struct {
	reg                       *liveRegistry
	requests, responses, hist *prometheus.Desc
}

func newLiveCollector(reg *liveRegistry) *liveCollector {
	return &liveCollector{
		reg: reg,
		requests: prometheus.NewDesc(metricPrefix+"live_requests_total",
			"Requests of a live launch, by the version that served them (new, or primary for eligible requests outside live_percent).",
			[]string{"launch", "version"}, nil),
		responses: prometheus.NewDesc(metricPrefix+"live_responses_total",
			"Responses of a live launch by version and status class; class error: no response (the client got a 502).",
			[]string{"launch", "version", "class"}, nil),
		hist: prometheus.NewDesc(metricPrefix+"live_latency_seconds",
			"Latency of a live launch's requests by version, from receiving the request to the end of the response.",
			[]string{"launch", "version"}, nil),
	}
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.responses
	ch <- c.hist
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ls := range c.reg.all() {
		steps := ls.allSteps()
		for a := range numArms {
			// Summed over the launch's steps: Prometheus counters never go
			// down, whatever live_percent does.
			var v versionCounts
			for _, st := range steps {
				v.add(&st.arms[a])
			}
			version := armNames[a]
			ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(v.requests), ls.id, version)
			for i, class := range classNames {
				ch <- prometheus.MustNewConstMetric(c.responses, prometheus.CounterValue, float64(v.classes[i]), ls.id, version, class)
			}
			count, buckets := v.histogram()
			ch <- prometheus.MustNewConstHistogram(c.hist, count, time.Duration(v.sumNS).Seconds(), buckets, ls.id, version)
		}
	}
}
