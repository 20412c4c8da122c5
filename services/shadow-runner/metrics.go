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
	// Skipped counts envelopes of promoted or rolled-back launches, acked
	// without replay.
	Skipped int64
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
			Name: metricPrefix + "skipped_total", Help: "Envelopes acked without replay, by launch status."},
			[]string{"status"}),
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
	}
	reg.MustRegister(m.pReceived, m.pReplayed, m.shadowFailures.vec, m.pSkipped, m.pDeadLettered, m.pPublished,
		m.pPublishFailed, m.pNaks, m.pAckFailed, m.pTruncatedReq, m.pLatency, m.pInFlight,
		m.pSecondaryReplayed, m.pSecondaryLatency, m.secondaryFailures.vec)
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
		DeadLettered:      m.deadLettered.Load(),
		PairsPublished:    m.published.Load(),
		PublishFailures:   m.publishFailed.Load(),
		Naks:              m.naks.Load(),
		AckFailures:       m.ackFailed.Load(),
		InFlight:          m.inFlight.Load(),
	}
}
