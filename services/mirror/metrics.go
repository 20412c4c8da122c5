package mirror

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons an envelope was dropped instead of published, the values of the
// reason label of darklaunch_mirror_envelopes_dropped_total and the keys of
// Stats.Dropped.
const (
	// ReasonQueueFull: the publish queue (count or bytes) was full.
	ReasonQueueFull = "queue_full"
	// ReasonNATSError: the publish failed or was not acknowledged (NATS
	// down, stream missing, ack timeout, stalled on pending acks) for
	// MIRROR_PUBLISH_RETRY_FOR, retries included.
	ReasonNATSError = "nats_error"
	// ReasonClientAbort: the client went away before the primary's response
	// was complete; a half response is never published.
	ReasonClientAbort = "client_abort"
	// ReasonPrimaryError: the primary could not be reached or broke off its
	// response; the client got a 502 or a cut response, as without the tap.
	ReasonPrimaryError = "primary_error"
	// ReasonUnsupported: the primary switched protocols (101).
	ReasonUnsupported = "unsupported"
	// ReasonEncodeError: the envelope could not be encoded as JSON.
	ReasonEncodeError = "encode_error"
	// ReasonTooLarge: even with bodies cut to fit, the envelope exceeds the
	// NATS server's max payload (huge headers).
	ReasonTooLarge = "too_large"
	// ReasonShutdown: still queued, waiting for a retry or unacknowledged
	// when the drain timeout ran out at shutdown.
	ReasonShutdown = "shutdown"
)

type dropReason int

const (
	dropQueueFull dropReason = iota
	dropNATSError
	dropClientAbort
	dropPrimaryError
	dropUnsupported
	dropEncodeError
	dropTooLarge
	dropShutdown
	numReasons
	reasonNone dropReason = -1
)

var reasonNames = [numReasons]string{
	ReasonQueueFull, ReasonNATSError, ReasonClientAbort, ReasonPrimaryError,
	ReasonUnsupported, ReasonEncodeError, ReasonTooLarge, ReasonShutdown,
}

// metrics are the tap's counters, Prometheus collectors all: code
// increments them directly (a counter's Inc is one atomic add, and every
// labelled child is resolved once here, so the request path neither
// allocates nor locks), and Stats reads the same collectors.
type metrics struct {
	proxied, proxyErrors, sampled, published prometheus.Counter
	// dropped is envelopes_dropped_total's child of each reason.
	dropped [numReasons]prometheus.Counter
	// pending is the envelopes published and not yet acknowledged.
	pending prometheus.Gauge
	// The publisher's messages: batches acknowledged, retries sent, and
	// envelopes whose ack said duplicate (stored by an earlier attempt).
	batches, retries, duplicateAcks prometheus.Counter
	// stickyMissing counts decisions made at random because the request
	// lacked the launch's sticky key, by use (sampling, live routing).
	stickyMissing [numUses]prometheus.Counter
	// liveReports counts live snapshots written to the KV bucket,
	// liveReportErrors the attempts that failed.
	liveReports, liveReportErrors prometheus.Counter
	latency                       prometheus.Histogram
	// framingRejected counts requests refused for ambiguous framing
	// (framing.go); replays the runners' replays served unsampled, and
	// markersRemoved the replay markers clients sent (trust.go).
	framingRejected, replays, markersRemoved prometheus.Counter
}

const metricPrefix = "darklaunch_mirror_"

// newMetrics declares the tap's own collectors; the gauges that read the
// service's state (queue, routes) are registered by registerMetrics.
func newMetrics(reg prometheus.Registerer) *metrics {
	d := admin.Metrics{Reg: reg, Prefix: metricPrefix}
	m := &metrics{
		proxied:     d.Counter("requests_total", "Requests proxied to the primary."),
		proxyErrors: d.Counter("proxy_errors_total", "Requests the primary could not answer (the client got a 502)."),
		sampled:     d.Counter("envelopes_sampled_total", "Envelopes started: one per sampled request and launch."),
		published:   d.Counter("envelopes_published_total", "Envelopes acknowledged by JetStream."),
		pending:     d.Gauge("publish_pending", "Envelopes published and awaiting a JetStream ack."),
		batches:     d.Counter("batches_published_total", "NATS messages (batches, or single envelopes with MIRROR_BATCH_MAX_ENVELOPES=1) acknowledged by JetStream."),
		retries:     d.Counter("publish_retries_total", "Messages sent again, under the same Nats-Msg-Id, after a failed or unanswered publish."),
		duplicateAcks: d.Counter("envelopes_duplicate_acks_total",
			"Envelopes counted published on a duplicate ack: a retry found them stored by an earlier attempt whose ack was lost."),
		liveReports:      d.Counter("live_reports_total", "Live snapshots written to the KV bucket darklaunch_live (one per live launch per MIRROR_LIVE_REPORT_INTERVAL, and at shutdown)."),
		liveReportErrors: d.Counter("live_report_errors_total", "Live snapshots that could not be written to the KV bucket darklaunch_live."),
		framingRejected: d.Counter("requests_refused_framing_total",
			"Requests refused with a 400 for ambiguous framing (Content-Length with Transfer-Encoding, an obfuscated or repeated Transfer-Encoding, ...): neither forwarded nor sampled."),
		replays: d.Counter("replays_total", "Requests with a valid replay marker (a runner's replay): served, never sampled."),
		markersRemoved: d.Counter("replay_markers_removed_total",
			"Requests whose X-Darklaunch-Shadow/X-Darklaunch-Replay markers were removed: no valid proof, so a client's (not sampled either when the tap has no key file)."),
		latency: d.Histogram("primary_latency_seconds",
			"Primary latency of sampled requests, from receiving the request to the end of the response body.",
			prometheus.ExponentialBuckets(0.0001, 2, 18)), // 100µs .. 13s
	}
	dropped := d.CounterVec("envelopes_dropped_total", "Envelopes given up, by reason.", "reason")
	for i, name := range reasonNames {
		m.dropped[i] = dropped.WithLabelValues(name)
	}
	sticky := d.CounterVec("sticky_key_missing_total",
		"Decisions (per request and launch) made at random because the request lacked the launch's sticky key; use: sample or live.", "use")
	for i, use := range useNames {
		m.stickyMissing[i] = sticky.WithLabelValues(use)
	}
	return m
}

// Stats is a snapshot of the tap's counters.
type Stats struct {
	// Proxied counts requests received (every one goes to the primary).
	Proxied uint64
	// ProxyErrors counts requests the primary could not answer (502).
	ProxyErrors uint64
	// Sampled counts envelopes started: one per request and sampled launch.
	Sampled uint64
	// Published counts envelopes acknowledged by JetStream.
	Published uint64
	// Dropped counts envelopes given up, by reason (every Reason* key is
	// present). Once no request is in flight,
	// Sampled == Published + sum(Dropped) + QueueDepth.
	Dropped map[string]uint64
	// QueueDepth is the number of envelopes the publisher holds (queued,
	// in a batch, awaiting an ack or a retry), and PendingAcks the number
	// of those published and not yet acknowledged.
	QueueDepth  int
	PendingAcks int64
	// Batches counts NATS messages acknowledged, Retries the messages sent
	// again under the same id, and DuplicateAcks the envelopes counted
	// published because a retry's ack said an earlier attempt stored them.
	Batches, Retries, DuplicateAcks uint64
	// StickyKeyMissing counts sampling decisions (per request and launch)
	// made at random because the request lacked the launch's sticky key;
	// LiveStickyKeyMissing the same for live routing decisions.
	StickyKeyMissing, LiveStickyKeyMissing uint64
	// LiveReports counts live snapshots written to the KV bucket
	// darklaunch_live (one per live launch every
	// MIRROR_LIVE_REPORT_INTERVAL, and at shutdown); LiveReportErrors the
	// writes that failed.
	LiveReports, LiveReportErrors uint64
	// FramingRefused counts requests refused for ambiguous framing;
	// Replays the runners' replays served unsampled; MarkersRemoved the
	// replay markers removed from clients' requests.
	FramingRefused, Replays, MarkersRemoved uint64
}

// DroppedTotal sums Dropped over all reasons.
func (s Stats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

// Stats returns the current counters.
func (s *Service) Stats() Stats {
	m := s.stats
	st := Stats{
		Proxied:     admin.Uint(m.proxied),
		ProxyErrors: admin.Uint(m.proxyErrors),
		Sampled:     admin.Uint(m.sampled),
		Published:   admin.Uint(m.published),
		Dropped:     make(map[string]uint64, numReasons),
		QueueDepth:  int(s.pub.held.Load()),
		PendingAcks: admin.Int(m.pending),

		Batches:       admin.Uint(m.batches),
		Retries:       admin.Uint(m.retries),
		DuplicateAcks: admin.Uint(m.duplicateAcks),

		StickyKeyMissing:     admin.Uint(m.stickyMissing[useSample]),
		LiveStickyKeyMissing: admin.Uint(m.stickyMissing[useLive]),

		LiveReports:      admin.Uint(m.liveReports),
		LiveReportErrors: admin.Uint(m.liveReportErrors),

		FramingRefused: admin.Uint(m.framingRejected),
		Replays:        admin.Uint(m.replays),
		MarkersRemoved: admin.Uint(m.markersRemoved),
	}
	for i, name := range reasonNames {
		st.Dropped[name] = admin.Uint(m.dropped[i])
	}
	return st
}

// drop counts n envelopes of the launch given up for reason r, in the
// metrics and in the launch's accounting.
func (s *Service) drop(launchID string, r dropReason, n int) {
	s.stats.dropped[r].Add(float64(n))
	s.acct.ledger.Dropped(launchID, reasonNames[r], uint64(n))
}

// registerMetrics declares the tap's collectors (newMetrics) and the
// gauges that read the service's state.
func (s *Service) registerMetrics(reg prometheus.Registerer) {
	s.stats = newMetrics(reg)
	gauge := admin.Metrics{Reg: reg, Prefix: metricPrefix}.GaugeFunc
	gauge("queue_depth", "Envelopes the publisher holds: queued, in a batch, awaiting an ack or a retry.", func() float64 { return float64(s.pub.held.Load()) })
	gauge("queue_capacity", "Envelopes the publisher may hold (MIRROR_QUEUE_SIZE).", func() float64 { return float64(s.cfg.QueueSize) })
	gauge("queue_bytes", "Bytes the publisher holds (MIRROR_QUEUE_MAX_BYTES): captured bodies and headers, then encoded batches.", func() float64 { return float64(s.queueBytes.Load()) })
	gauge("launches_mirrored", "Launches of this tap's service being sampled now.", func() float64 {
		return float64(len(s.currentRoutes().mirrored))
	})
	gauge("launches_live", "Launches of this tap's service whose new version serves live traffic now (0 or 1).", func() float64 {
		if s.currentRoutes().live != nil {
			return 1
		}
		return 0
	})
	gauge("live_percent", "Share of eligible live traffic the live launch's new version serves now (0: none).", func() float64 {
		if lr := s.currentRoutes().live; lr != nil {
			return lr.l.LivePercent
		}
		return 0
	})
	reg.MustRegister(newLiveCollector(&s.live))
}

// logThrottled logs at most once per 10 s per call site (last), so that a
// failure hit by every request does not flood the log.
func (s *Service) logThrottled(last *atomic.Int64, level slog.Level, msg string, args ...any) {
	now := time.Now().UnixNano()
	prev := last.Load()
	if now-prev < int64(10*time.Second) || !last.CompareAndSwap(prev, now) {
		return
	}
	s.log.Log(context.Background(), level, msg, args...)
}
