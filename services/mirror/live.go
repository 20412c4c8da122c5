package mirror

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// versionStats counts what one version of a live launch served. Plain
// atomics: the request path only adds, and both LiveStats and the
// Prometheus collector read the same numbers.
type versionStats struct {
	requests atomic.Uint64
	classes  [numClasses]atomic.Uint64
	latency  [numLatencyBounds + 1]atomic.Uint64 // per bucket, not cumulative
	sumNS    atomic.Uint64
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
	v.sumNS.Add(uint64(max(d, 0)))
}

// liveStats are one launch's live counters. They outlive revisions (each
// live_percent step is a new revision) and the launch's live period, so
// that the last values stay readable after a promotion or a rollback.
type liveStats struct {
	id   string
	arms [numArms]versionStats
}

// liveRegistry holds the live counters of every launch the tap has routed
// live traffic for since it started.
type liveRegistry struct {
	mu sync.Mutex
	m  map[string]*liveStats
}

func (r *liveRegistry) get(id string) *liveStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]*liveStats{}
	}
	ls := r.m[id]
	if ls == nil {
		ls = &liveStats{id: id}
		r.m[id] = ls
	}
	return ls
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

// LiveStats is what one tap observed of a live launch: the requests its new
// version served and, as control group, the eligible requests the primary
// served.
type LiveStats struct {
	LaunchID string
	New      VersionStats
	Primary  VersionStats
}

// VersionStats counts the requests one version served through this tap.
type VersionStats struct {
	Requests uint64
	// Status counts responses by class ("1xx" .. "5xx") and requests that
	// got none (ClassError). Requests whose client went away before the
	// response are in Requests only.
	Status map[string]uint64
	// Latency is from receiving the request to the end of the response
	// (the proxy copying the body to the client included). Protocol
	// upgrades and aborted responses are not observed.
	Latency LatencyStats
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

// LiveStats returns the live counters of every launch this tap has routed
// live traffic for since it started, by launch id.
func (s *Service) LiveStats() []LiveStats {
	var out []LiveStats
	for _, ls := range s.live.all() {
		out = append(out, LiveStats{
			LaunchID: ls.id,
			New:      ls.arms[armNew].snapshot(),
			Primary:  ls.arms[armPrimary].snapshot(),
		})
	}
	return out
}

func (v *versionStats) snapshot() VersionStats {
	st := VersionStats{Requests: v.requests.Load(), Status: make(map[string]uint64, numClasses)}
	for i, name := range classNames {
		st.Status[name] = v.classes[i].Load()
	}
	count, cum := v.histogram()
	st.Latency = LatencyStats{Count: count, Sum: time.Duration(v.sumNS.Load())}
	for _, b := range latencyBounds {
		st.Latency.Buckets = append(st.Latency.Buckets, LatencyBucket{UpperBoundSeconds: b, Count: cum[b]})
	}
	st.Latency.Buckets = append(st.Latency.Buckets, LatencyBucket{UpperBoundSeconds: math.Inf(1), Count: count})
	return st
}

// histogram returns the count and the cumulative counts per bound.
func (v *versionStats) histogram() (uint64, map[float64]uint64) {
	cum := make(map[float64]uint64, len(latencyBounds))
	var n uint64
	for i, b := range latencyBounds {
		n += v.latency[i].Load()
		cum[b] = n
	}
	n += v.latency[numLatencyBounds].Load()
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
		for a := range ls.arms {
			v, version := &ls.arms[a], armNames[a]
			ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(v.requests.Load()), ls.id, version)
			for i, class := range classNames {
				ch <- prometheus.MustNewConstMetric(c.responses, prometheus.CounterValue, float64(v.classes[i].Load()), ls.id, version, class)
			}
			count, buckets := v.histogram()
			ch <- prometheus.MustNewConstHistogram(c.hist, count, time.Duration(v.sumNS.Load()).Seconds(), buckets, ls.id, version)
		}
	}
}
