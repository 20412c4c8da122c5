package runner

import (
	"sync/atomic"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/prometheus/client_golang/prometheus"
)

const metricPrefix = "darklaunch_shadow_runner_"

// Stats are the runner's counters since New, for tests and diagnostics.
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

type metrics struct {
	rateLimited, runners                                                                 atomic.Int64
	received, replayed, skipped, deadLettered, published, publishFailed, naks, ackFailed atomic.Int64
	inFlight                                                                             atomic.Int64
	secondaryReplayed                                                                    atomic.Int64
	shadowFailures, secondaryFailures                                                    failures

	pSecondaryReplayed prometheus.Counter
	pSecondaryLatency  prometheus.Histogram

	pReceived      prometheus.Counter
	pReplayed      prometheus.Counter
	pSkipped       *prometheus.CounterVec
	pDeadLettered  *prometheus.CounterVec
	pPublished     prometheus.Counter
	pPublishFailed prometheus.Counter
	pNaks          prometheus.Counter
	pAckFailed     prometheus.Counter
	pTruncatedReq  prometheus.Counter
	pLatency       prometheus.Histogram
	pInFlight      prometheus.Gauge

	pRunners         prometheus.Gauge
	pHeartbeatFailed prometheus.Counter
	pIDCollisions    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		shadowFailures: failures{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "shadow_failures_total", Help: "Replays without a complete answer, by kind (timeout, refused, reset, error)."},
			[]string{"kind"})},
		secondaryFailures: failures{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "secondary_failures_total", Help: "Secondary replays without a complete answer, by kind (timeout, refused, reset, error)."},
			[]string{"kind"})},
		pSecondaryReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "secondary_replays_total", Help: "Requests replayed to a launch's secondary (noise cancellation), failed ones included."}),
		pSecondaryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: metricPrefix + "secondary_latency_seconds", Help: "Time from sending a replay to the end of the secondary's body.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		pReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "envelopes_received_total", Help: "Envelope deliveries, redeliveries included."}),
		pReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "replays_total", Help: "Requests replayed to a shadow, failed ones included."}),
		pSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "skipped_total", Help: "Envelopes acked without replay, by reason: the launch is rolled_back or promoted, or the envelope was over the launch's max_rps (rate_limited)."},
			[]string{"reason"}),
		pDeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "dead_lettered_total", Help: "Envelopes moved to the dead-letter stream, by reason."},
			[]string{"reason"}),
		pPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "pairs_published_total", Help: "Pairs stored in the pairs stream."}),
		pPublishFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "publish_failures_total", Help: "Pair or dead-letter publishes that failed (the envelope is retried)."}),
		pNaks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "naks_total", Help: "Envelopes handed back for redelivery."}),
		pAckFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "ack_failures_total", Help: "Envelope acks the server did not confirm."}),
		pTruncatedReq: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "truncated_requests_total", Help: "Replays whose request body had been truncated by the tap (sent as captured)."}),
		pLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: metricPrefix + "replay_latency_seconds", Help: "Time from sending a replay to the end of the shadow's body.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		pInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricPrefix + "in_flight", Help: "Envelopes being processed now."}),
		pRunners: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricPrefix + "runners", Help: "Live runners this one counts in the darklaunch_runners bucket (itself included); each launch's max_rps is split by this."}),
		pHeartbeatFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "heartbeat_failures_total", Help: "Heartbeats into the darklaunch_runners bucket that failed."}),
		pIDCollisions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "runner_id_collisions_total", Help: "Heartbeats that found this runner's key written by another process with the same RUNNER_ID."}),
	}
	reg.MustRegister(m.pReceived, m.pReplayed, m.shadowFailures.vec, m.pSkipped, m.pDeadLettered, m.pPublished,
		m.pPublishFailed, m.pNaks, m.pAckFailed, m.pTruncatedReq, m.pLatency, m.pInFlight,
		m.pSecondaryReplayed, m.pSecondaryLatency, m.secondaryFailures.vec,
		m.pRunners, m.pHeartbeatFailed, m.pIDCollisions)
	m.pRunners.Set(1)
	m.runners.Store(1)
	for _, r := range []string{skipRolledBack, skipPromoted, skipRateLimited} {
		m.pSkipped.WithLabelValues(r)
	}
	// Zero series for every known label, so dashboards see 0 rather than nothing.
	for _, k := range failureKinds {
		m.shadowFailures.vec.WithLabelValues(k)
		m.secondaryFailures.vec.WithLabelValues(k)
	}
	for _, r := range []string{reasonMalformed, reasonUnknownLaunch, reasonMaxDeliver} {
		m.pDeadLettered.WithLabelValues(r)
	}
	return m
}

// Dead-letter reasons, as metric labels.
const (
	reasonMalformed     = "malformed"
	reasonUnknownLaunch = "unknown_launch"
	reasonMaxDeliver    = "max_deliver"
)

// Skip reasons, as metric labels: a finished launch's status, or the cap.
const (
	skipRolledBack  = "rolled_back"
	skipPromoted    = "promoted"
	skipRateLimited = "rate_limited"
)

var failureKinds = []string{envelope.ErrorTimeout, envelope.ErrorRefused, envelope.ErrorReset, envelope.ErrorOther}

// failures counts failed replays of one target by kind, for Stats and for
// Prometheus.
type failures struct {
	timeout, refused, reset, other atomic.Int64
	vec                            *prometheus.CounterVec
}

func (f *failures) add(kind string) {
	switch kind {
	case envelope.ErrorTimeout:
		f.timeout.Add(1)
	case envelope.ErrorRefused:
		f.refused.Add(1)
	case envelope.ErrorReset:
		f.reset.Add(1)
	default:
		kind = envelope.ErrorOther
		f.other.Add(1)
	}
	f.vec.WithLabelValues(kind).Inc()
}

func (f *failures) snapshot() map[string]int64 {
	return map[string]int64{
		envelope.ErrorTimeout: f.timeout.Load(),
		envelope.ErrorRefused: f.refused.Load(),
		envelope.ErrorReset:   f.reset.Load(),
		envelope.ErrorOther:   f.other.Load(),
	}
}

func (m *metrics) snapshot() Stats {
	return Stats{
		Received:          m.received.Load(),
		Replayed:          m.replayed.Load(),
		ShadowFailures:    m.shadowFailures.snapshot(),
		SecondaryReplayed: m.secondaryReplayed.Load(),
		SecondaryFailures: m.secondaryFailures.snapshot(),
		Skipped:           m.skipped.Load(),
		RateLimited:       m.rateLimited.Load(),
		Runners:           m.runners.Load(),
		DeadLettered:      m.deadLettered.Load(),
		PairsPublished:    m.published.Load(),
		PublishFailures:   m.publishFailed.Load(),
		Naks:              m.naks.Load(),
		AckFailures:       m.ackFailed.Load(),
		InFlight:          m.inFlight.Load(),
	}
}
