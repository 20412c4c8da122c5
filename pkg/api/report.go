package api

import (
	"time"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// Report is the body of GET /v1/launches/{id}/report: the launch as it is
// now plus its comparison statistics as of GeneratedAt.
type Report struct {
	Launch *launch.Launch `json:"launch"`
	// AgeSeconds is how old the numbers are when served (now -
	// GeneratedAt on the reporter's clock, to the millisecond): a served
	// report may be older than REPORTER_CACHE_TTL while one refresh runs.
	AgeSeconds float64 `json:"age_seconds"`
	Stats
}

// Stats are a launch's comparison statistics, computed in ClickHouse.
type Stats struct {
	// GeneratedAt is when ClickHouse computed these numbers (a cached report
	// keeps the time of its computation).
	GeneratedAt time.Time    `json:"generated_at"`
	Totals      Totals       `json:"totals"`
	LatencyMS   Latency      `json:"latency_ms"`
	Routes      []RouteStats `json:"routes"`
	Diffs       []DiffCount  `json:"diffs"`
	// Noise says which differences were not counted as mismatches because
	// the primary's own version is not deterministic there.
	Noise Noise `json:"noise"`
	// Classes are the mismatches grouped by fingerprint, most frequent
	// first.
	Classes []DiffClass `json:"classes"`
	// Audit are the launch's latest state changes, newest first (at most
	// 100).
	Audit []AuditEntry `json:"audit"`
	// Accounting says what became of every sampled envelope (the report
	// has it; QueryStats alone leaves it out).
	Accounting *Accounting `json:"accounting,omitempty"`
}

// Totals count the launch's compared pairs.
type Totals struct {
	// Compared is every stored pair, shadow errors included.
	Compared uint64 `json:"compared"`
	// Mismatches are pairs where the shadow answered with at least one
	// difference that is neither per-request noise nor at a suppressed
	// path (see Noise).
	Mismatches uint64 `json:"mismatches"`
	// ShadowErrors are pairs where the shadow did not answer (timeout,
	// refused, reset...).
	ShadowErrors uint64 `json:"shadow_errors"`
	// MismatchRate is Mismatches / Compared, 0 when nothing was compared.
	MismatchRate float64 `json:"mismatch_rate"`
	// ShadowErrorRate is ShadowErrors / Compared, 0 when nothing was compared.
	ShadowErrorRate float64 `json:"shadow_error_rate"`
	// RawMismatches are pairs where the shadow answered and anything
	// differed, noise included (match = 0).
	RawMismatches uint64 `json:"raw_mismatches"`
	// RawMismatchRate is RawMismatches / Compared.
	RawMismatchRate float64 `json:"raw_mismatch_rate"`
	// WithSecondary are pairs the secondary answered too, so per-request
	// noise could be told apart.
	WithSecondary uint64 `json:"with_secondary"`
}

// Quantiles are latency quantiles in milliseconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Latency holds the primary's latency over every pair, the shadow's over
// the pairs where it answered and, when a secondary answered any, the
// secondary's over the pairs where it answered. The primary is timed by
// the mirror, the shadow and the secondary by the runner.
type Latency struct {
	Primary   Quantiles  `json:"primary"`
	Shadow    Quantiles  `json:"shadow"`
	Secondary *Quantiles `json:"secondary,omitempty"`
}

// RouteStats are the totals and latencies of one route and method.
type RouteStats struct {
	Route         string  `json:"route"`
	Method        string  `json:"method"`
	Compared      uint64  `json:"compared"`
	Mismatches    uint64  `json:"mismatches"`
	ShadowErrors  uint64  `json:"shadow_errors"`
	LatencyMS     Latency `json:"latency_ms"`
	RawMismatches uint64  `json:"raw_mismatches"`
	WithSecondary uint64  `json:"with_secondary"`
}

// DiffCount is how often one generalized path ($.items[*].price) differed
// in one way, and how often of those the difference was per-request noise.
type DiffCount struct {
	Path  string `json:"path"`
	Kind  string `json:"kind"`
	Count uint64 `json:"count"`
	Noisy uint64 `json:"noisy"`
}

// NoiseThresholds decide when a path is mostly noise: at least MinCount of
// its differences, and at least MinRatio of them, also appeared between
// primary and secondary in the same request.
type NoiseThresholds struct {
	MinCount uint64  `json:"min_count"`
	MinRatio float64 `json:"min_ratio"`
}

// Suppresses reports whether a path with raw differences of which noisy
// were per-request noise is suppressed.
func (t NoiseThresholds) Suppresses(raw, noisy uint64) bool {
	return raw > 0 && noisy >= t.MinCount && float64(noisy)/float64(raw) >= t.MinRatio
}

// Noise is the report's noise section.
type Noise struct {
	NoiseThresholds
	// Suppressed are the (route, generalized path) whose differences are
	// all counted as noise, most noisy first.
	Suppressed []SuppressedPath `json:"suppressed"`
}

// SuppressedPath is one suppressed (route, generalized path) and why.
type SuppressedPath struct {
	Route  string  `json:"route"`
	Path   string  `json:"path"`
	Raw    uint64  `json:"raw"`
	Noisy  uint64  `json:"noisy"`
	Ratio  float64 `json:"ratio"`
	Reason string  `json:"reason"`
}

// DiffClass is one class of mismatches: pairs of a route whose real (not
// per-request noise) differences have the same set of (generalized path,
// kind).
type DiffClass struct {
	Fingerprint string     `json:"fingerprint"`
	Route       string     `json:"route"`
	Diffs       []PathKind `json:"diffs"`
	Count       uint64     `json:"count"`
	FirstSeen   time.Time  `json:"first_seen"`
	LastSeen    time.Time  `json:"last_seen"`
	// ShareOfRoute is Count / the route's compared pairs (every method).
	ShareOfRoute float64 `json:"share_of_route"`
	// Examples are envelope ids of stored examples
	// (GET /v1/launches/{id}/examples/{fingerprint}).
	Examples []string `json:"examples"`
}

// PathKind is one difference: where and how.
type PathKind struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
}

// Route returns the figures of one route (as the report names it, e.g.
// "/api/users/{id}") and whether the report has it.
func (s *Stats) Route(route string) (RouteStats, bool) {
	for _, r := range s.Routes {
		if r.Route == route {
			return r, true
		}
	}
	return RouteStats{}, false
}
