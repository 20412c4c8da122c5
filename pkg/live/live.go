// Package live carries what the taps observe of live traffic while a launch
// is being promoted, and the arithmetic to judge it.
//
// While a launch is live (status promoting or promoted, live_percent > 0),
// each mirror tap routes the launch's share of eligible requests to the new
// version and the rest to the primary, and counts both sides. Every few
// seconds each tap writes one Snapshot per live launch into the KV bucket
// darklaunch_live, under the key <launch_id>.<tap_id>. A reader (the
// reporter's controller) collects the snapshots of a launch with Read,
// sums those of the current live step with Aggregate, and judges the
// Totals: error rates (ErrorRateDelta, ErrorRateZTest,
// ErrorRateAlwaysValidP) and latency quantiles from the histograms
// (Side.Quantile, LatencyRatio).
//
// A Snapshot's counters are cumulative since Since: the moment the tap
// started counting for the launch's current live_percent. When
// live_percent changes, users move from the primary to the new version, so
// the tap starts counting afresh and Since moves.
package live

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Version is the wire version of a Snapshot (its "v"). It changes when the
// meaning of a field changes, Bounds included.
const Version = 1

// Bounds are the upper bounds, in milliseconds, of the latency histogram
// buckets: bucket i counts latencies d with Bounds[i-1] < d <= Bounds[i]
// (0 < d <= Bounds[0] for the first), and the last bound is +Inf. Ten
// bounds per decade (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8) from 0.1 ms to
// 10 s: two neighbouring bounds are at most 4/3 apart, fine enough to tell
// a p95 ratio of 1.5 from 1 (a 1-2-5 series cannot: two latencies in one
// bucket interpolate alike). Changing them changes Version.
var Bounds = [...]float64{
	0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8,
	1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8,
	10, 12.5, 15, 20, 25, 30, 40, 50, 60, 80,
	100, 125, 150, 200, 250, 300, 400, 500, 600, 800,
	1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000,
	10000, math.Inf(1),
}

// NumBuckets is the length of every Side.LatencyBuckets.
const NumBuckets = len(Bounds)

// BucketOf returns the index of the latency bucket d falls in.
func BucketOf(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	i, _ := slices.BinarySearch(Bounds[:], ms) // first bound >= ms
	return i
}

// Snapshot is what one tap observed of one live launch during its current
// live step: the requests the new version served and, as control group,
// the eligible requests (path within the launch's filters) the primary
// served because their user is outside live_percent.
type Snapshot struct {
	V        int    `json:"v"`
	LaunchID string `json:"launch_id"`
	TapID    string `json:"tap_id"`
	// At is when the tap took the snapshot.
	At time.Time `json:"at"`
	// Since is when the tap started counting for the launch's current
	// live_percent (the tap's clock): all counters are cumulative since.
	Since time.Time `json:"since"`
	// LivePercent is the launch's live_percent the tap routes by.
	LivePercent float64 `json:"live_percent"`
	New         Side    `json:"new"`
	Primary     Side    `json:"primary"`
}

// Side counts what one version served through a tap (or, in Totals, through
// all the taps summed).
type Side struct {
	// Requests routed to this version, counted when routed: it includes
	// requests still in flight and those whose client went away.
	Requests uint64 `json:"requests"`
	// Errors are responses with a 5xx status plus requests that got no
	// response from the version (refused, reset, timed out: the client got
	// a 502). A client that went away first is not an error.
	Errors uint64 `json:"errors"`
	// LatencyBuckets counts completed requests per latency bucket (not
	// cumulative), NumBuckets long, over Bounds; latency runs from receiving
	// the request to the end of the response copied to the client.
	// Aborted responses and upgraded connections are not observed.
	LatencyBuckets []uint64 `json:"latency_buckets"`
}

// ErrMalformed wraps every reason a stored snapshot is not usable.
var ErrMalformed = errors.New("malformed live snapshot")

// ErrInvalid wraps errors about arguments (a launch id that cannot be part
// of a key, a snapshot that cannot be stored).
var ErrInvalid = errors.New("invalid live snapshot argument")

// Encode checks s and returns it as JSON. A nil LatencyBuckets is written as
// NumBuckets zeros; V 0 is written as Version.
func Encode(s Snapshot) ([]byte, error) {
	if s.V == 0 {
		s.V = Version
	}
	for _, side := range []*Side{&s.New, &s.Primary} {
		if side.LatencyBuckets == nil {
			side.LatencyBuckets = make([]uint64, NumBuckets)
		}
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return json.Marshal(s)
}

// Decode parses a stored snapshot; errors wrap ErrMalformed.
func Decode(data []byte) (Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return Snapshot{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := s.check(); err != nil {
		return Snapshot{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, nil
}

func (s *Snapshot) check() error {
	switch {
	case s.V != Version:
		return fmt.Errorf("version %d, want %d", s.V, Version)
	case !validLaunchID(s.LaunchID):
		return fmt.Errorf("launch id %q", s.LaunchID)
	case s.TapID == "":
		return errors.New("no tap id")
	case s.Since.IsZero():
		return errors.New("no since")
	case len(s.New.LatencyBuckets) != NumBuckets || len(s.Primary.LatencyBuckets) != NumBuckets:
		return fmt.Errorf("%d and %d latency buckets, want %d", len(s.New.LatencyBuckets), len(s.Primary.LatencyBuckets), NumBuckets)
	}
	return nil
}
