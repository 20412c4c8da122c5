package runner

import (
	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/prometheus/client_golang/prometheus"
)

const metricPrefix = "darklaunch_shadow_runner_"

// Stats are the runner's counters since New, for tests and diagnostics,
// read from the collectors /metrics serves.
type Stats struct {
	// Received counts envelope deliveries, redeliveries included.
	Received int64
	// Replayed counts requests sent to a shadow (failed ones included).
	Replayed int64
	// ShadowFailures counts replays that got no complete answer, by
	// envelope.Error* kind.
	ShadowFailures map[string]int64
	// SecondaryReplayed counts requests sent to a launch's secondary
	// (failed ones included); SecondaryFailures counts those without a
	// complete answer, by kind.
	SecondaryReplayed int64
	SecondaryFailures map[string]int64
	// Skipped counts envelopes acked without replay: those of promoted or
	// rolled-back launches, and those over their launch's max_rps.
	Skipped int64
	// RateLimited counts the skipped envelopes that were over their
	// launch's max_rps share (part of Skipped).
	RateLimited int64
	// Runners is the number of live runners this one counts (itself
	// included) when sharing max_rps.
	Runners int64
	// DeadLettered counts envelopes moved to the dead-letter stream.
	DeadLettered int64
	// PairsPublished counts pairs the pairs stream confirmed.
	PairsPublished int64
	// PairsTruncated counts pairs whose bodies were cut to fit in a NATS
	// message.
	PairsTruncated int64
	// PublishFailures counts pair (or dead-letter) publishes that failed;
	// the envelope is then redelivered, never acked.
	PublishFailures int64
	// Naks counts envelopes handed back for redelivery.
	Naks int64
	// AckFailures counts acks the server did not confirm (the envelope will
	// be redelivered and its pair deduplicated by id).
	AckFailures int64
	// InFlight is the number of envelopes being processed now.
	InFlight int64
}

// metrics are the runner's own collectors; deliveries, acks, naks, dead
// letters and in-flight envelopes are the stage runtime's.
type metrics struct {
	replayed, secondaryReplayed            prometheus.Counter
	shadowFailures, secondaryFailures      *prometheus.CounterVec
	shadowFailure, secondaryFailure        map[string]prometheus.Counter // by kind, resolved once
	skipped                                *prometheus.CounterVec
	skippedRolledBack, skippedPromoted     prometheus.Counter
	rateLimited                            prometheus.Counter
	published, publishFailed, truncatedReq prometheus.Counter
	truncatedPairs                         prometheus.Counter
	latency, secondaryLatency              prometheus.Histogram
	runners                                prometheus.Gauge
	heartbeatFailed, idCollisions          prometheus.Counter
}

// Dead-letter reasons, as metric labels (the runtime adds max_deliver).
const (
	reasonMalformed     = "malformed"
	reasonUnknownLaunch = "unknown_launch"
	// reasonTooLarge: the pair does not fit in a NATS message even with
	// its bodies cut (huge headers).
	reasonTooLarge = "too_large"
)

// Skip reasons, as metric labels: a finished launch's status, or the cap.
const (
	skipRolledBack  = "rolled_back"
	skipPromoted    = "promoted"
	skipRateLimited = "rate_limited"
)

var failureKinds = []string{envelope.ErrorTimeout, envelope.ErrorRefused, envelope.ErrorReset, envelope.ErrorOther, envelope.ErrorBlocked}

func newMetrics(reg prometheus.Registerer) *metrics {
	d := admin.Metrics{Reg: reg, Prefix: metricPrefix}
	latency := prometheus.ExponentialBuckets(0.0005, 2, 16)
	m := &metrics{
		replayed:          d.Counter("replays_total", "Requests replayed to a shadow, failed ones included."),
		secondaryReplayed: d.Counter("secondary_replays_total", "Requests replayed to a launch's secondary (noise cancellation), failed ones included."),
		shadowFailures: d.CounterVec("shadow_failures_total",
			"Replays without a complete answer, by kind (timeout, refused, reset, error, blocked: refused by the target policy).", "kind"),
		secondaryFailures: d.CounterVec("secondary_failures_total",
			"Secondary replays without a complete answer, by kind (timeout, refused, reset, error, blocked).", "kind"),
		skipped:       d.CounterVec("skipped_total", "Envelopes acked without replay, by reason: the launch is rolled_back or promoted, or the envelope was over the launch's max_rps (rate_limited).", "reason"),
		published:     d.Counter("pairs_published_total", "Pairs stored in the pairs stream."),
		publishFailed: d.Counter("publish_failures_total", "Pair publishes that failed (the envelope is retried)."),
		truncatedReq:  d.Counter("truncated_requests_total", "Replays whose request body had been truncated by the tap (sent as captured)."),
		truncatedPairs: d.Counter("pairs_truncated_total",
			"Pairs whose bodies were cut (and flagged body_truncated) to fit in the NATS max payload."),
		latency: d.Histogram("replay_latency_seconds", "Time from sending a replay to the end of the shadow's body.", latency),
		secondaryLatency: d.Histogram("secondary_latency_seconds",
			"Time from sending a replay to the end of the secondary's body.", latency),
		runners: d.Gauge("runners",
			"Live runners this one counts in the darklaunch_runners bucket (itself included); each launch's max_rps is split by this."),
		heartbeatFailed:  d.Counter("heartbeat_failures_total", "Heartbeats into the darklaunch_runners bucket that failed."),
		idCollisions:     d.Counter("runner_id_collisions_total", "Heartbeats that found this runner's key written by another process with the same RUNNER_ID."),
		shadowFailure:    map[string]prometheus.Counter{},
		secondaryFailure: map[string]prometheus.Counter{},
	}
	m.runners.Set(1)
	// Children resolved once (zero series for dashboards, no lookup per envelope).
	m.skippedRolledBack = m.skipped.WithLabelValues(skipRolledBack)
	m.skippedPromoted = m.skipped.WithLabelValues(skipPromoted)
	m.rateLimited = m.skipped.WithLabelValues(skipRateLimited)
	for _, k := range failureKinds {
		m.shadowFailure[k] = m.shadowFailures.WithLabelValues(k)
		m.secondaryFailure[k] = m.secondaryFailures.WithLabelValues(k)
	}
	return m
}

// failed counts a failed replay under its kind (unknown kinds as error).
func failed(by map[string]prometheus.Counter, kind string) {
	c, ok := by[kind]
	if !ok {
		c = by[envelope.ErrorOther]
	}
	c.Inc()
}

func byKind(by map[string]prometheus.Counter) map[string]int64 {
	out := make(map[string]int64, len(by))
	for k, c := range by {
		out[k] = admin.Int(c)
	}
	return out
}

func (m *metrics) snapshot(st stage.Stats) Stats {
	return Stats{
		Received:          st.Received,
		Replayed:          admin.Int(m.replayed),
		ShadowFailures:    byKind(m.shadowFailure),
		SecondaryReplayed: admin.Int(m.secondaryReplayed),
		SecondaryFailures: byKind(m.secondaryFailure),
		Skipped:           int64(admin.Sum(m.skipped)),
		RateLimited:       admin.Int(m.rateLimited),
		Runners:           admin.Int(m.runners),
		DeadLettered:      st.DeadLetteredTotal(),
		PairsPublished:    admin.Int(m.published),
		PairsTruncated:    admin.Int(m.truncatedPairs),
		PublishFailures:   admin.Int(m.publishFailed) + st.DeadLetterFailures,
		Naks:              st.Naks,
		AckFailures:       st.AckFailures,
		InFlight:          st.InFlight,
	}
}
