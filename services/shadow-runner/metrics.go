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
	failTimeout, failRefused, failReset, failOther                                       atomic.Int64

	pReceived      prometheus.Counter
	pReplayed      prometheus.Counter
	pFailures      *prometheus.CounterVec
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
		pReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "envelopes_received_total", Help: "Envelope deliveries, redeliveries included."}),
		pReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "replays_total", Help: "Requests replayed to a shadow, failed ones included."}),
		pFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "shadow_failures_total", Help: "Replays without a complete answer, by kind (timeout, refused, reset, error)."},
			[]string{"kind"}),
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
	reg.MustRegister(m.pReceived, m.pReplayed, m.pFailures, m.pSkipped, m.pDeadLettered, m.pPublished,
		m.pPublishFailed, m.pNaks, m.pAckFailed, m.pTruncatedReq, m.pLatency, m.pInFlight)
	// Zero series for every known label, so dashboards see 0 rather than nothing.
	for _, k := range []string{envelope.ErrorTimeout, envelope.ErrorRefused, envelope.ErrorReset, envelope.ErrorOther} {
		m.pFailures.WithLabelValues(k)
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

func (m *metrics) shadowFailure(kind string) {
	switch kind {
	case envelope.ErrorTimeout:
		m.failTimeout.Add(1)
	case envelope.ErrorRefused:
		m.failRefused.Add(1)
	case envelope.ErrorReset:
		m.failReset.Add(1)
	default:
		kind = envelope.ErrorOther
		m.failOther.Add(1)
	}
	m.pFailures.WithLabelValues(kind).Inc()
}

func (m *metrics) snapshot() Stats {
	return Stats{
		Received: m.received.Load(),
		Replayed: m.replayed.Load(),
		ShadowFailures: map[string]int64{
			envelope.ErrorTimeout: m.failTimeout.Load(),
			envelope.ErrorRefused: m.failRefused.Load(),
			envelope.ErrorReset:   m.failReset.Load(),
			envelope.ErrorOther:   m.failOther.Load(),
		},
		Skipped:         m.skipped.Load(),
		DeadLettered:    m.deadLettered.Load(),
		PairsPublished:  m.published.Load(),
		PublishFailures: m.publishFailed.Load(),
		Naks:            m.naks.Load(),
		AckFailures:     m.ackFailed.Load(),
		InFlight:        m.inFlight.Load(),
	}
}
