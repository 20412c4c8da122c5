package stage

import (
	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the runtime's counters since New, read from the collectors
// /metrics serves.
type Stats struct {
	// Received counts deliveries, redeliveries included; Redelivered the
	// ones the server had delivered before.
	Received, Redelivered int64
	// Acks counts acks sent, AckFailures the attempts that could not be
	// sent (the ack is held and sent again once NATS is back); Naks counts
	// deliveries handed back.
	Acks, AckFailures, Naks int64
	// DeadLettered counts dead letters by reason; DeadLetterFailures the
	// dead-letter publishes that failed (the delivery was handed back).
	DeadLettered       map[string]int64
	DeadLetterFailures int64
	// InFlight is the deliveries handed out and not yet settled.
	InFlight int64
	// FetchFailures counts failed pulls; ConsumerSetups the times the
	// consumer was created or updated (1 at start, more when it vanished).
	FetchFailures, ConsumerSetups int64
	// Panics counts handler panics (the delivery was dead-lettered).
	Panics int64
	// KeepAlives counts the ack deadlines restarted (InProgress) of
	// deliveries held longer than half of AckWait.
	KeepAlives int64
}

// DeadLetteredTotal is the dead letters of every reason.
func (st Stats) DeadLetteredTotal() int64 {
	var n int64
	for _, v := range st.DeadLettered {
		n += v
	}
	return n
}

type metrics struct {
	received, redelivered, acks, ackFailures, naks prometheus.Counter
	deadLettered                                   *prometheus.CounterVec
	deadLetterFailures, fetchFailures, panics      prometheus.Counter
	consumerSetups, keepAlives                     prometheus.Counter
	inFlight                                       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, cfg *Config) *metrics {
	d, u := admin.Metrics{Reg: reg, Prefix: cfg.MetricPrefix}, cfg.Unit
	counter := d.Counter
	m := &metrics{
		received:           counter(u+"_received_total", "Deliveries of "+u+", redeliveries included."),
		redelivered:        counter("redelivered_total", "Deliveries of "+u+" the server had delivered before (a crash, a nak or an ack deadline)."),
		acks:               counter("acks_total", "Acks sent."),
		ackFailures:        counter("ack_failures_total", "Ack attempts that could not be sent (NATS disconnected): the ack is held and sent again after the reconnect."),
		naks:               counter("naks_total", "Deliveries handed back for redelivery."),
		deadLetterFailures: counter("dead_letter_failures_total", "Dead-letter publishes that failed (the delivery is handed back)."),
		fetchFailures:      counter("fetch_failures_total", "Pulls from the consumer that failed (retried with backoff)."),
		panics:             counter("handler_panics_total", "Handler panics recovered (the delivery is dead-lettered with reason panic)."),
		consumerSetups:     counter("consumer_setups_total", "Times the durable consumer was created or updated: once at start, again when it vanished."),
		keepAlives:         counter("keepalives_total", "Ack deadlines restarted (InProgress) of deliveries held longer than half of AckWait."),
		deadLettered:       d.CounterVec("dead_lettered_total", "Deliveries moved to the dead-letter stream, by reason.", "reason"),
		inFlight:           d.Gauge("in_flight", "Deliveries of "+u+" being processed or held, not yet settled."),
	}
	for _, r := range append(cfg.DeadLetterReasons, ReasonMaxDeliver, ReasonPanic) {
		m.deadLettered.WithLabelValues(r)
	}
	return m
}

// Stats returns the runtime's counters since New.
func (s *Stage) Stats() Stats {
	m := s.m
	st := Stats{
		Received: admin.Int(m.received), Redelivered: admin.Int(m.redelivered),
		Acks: admin.Int(m.acks), AckFailures: admin.Int(m.ackFailures), Naks: admin.Int(m.naks),
		DeadLettered: map[string]int64{}, DeadLetterFailures: admin.Int(m.deadLetterFailures),
		InFlight: admin.Int(m.inFlight), FetchFailures: admin.Int(m.fetchFailures),
		ConsumerSetups: admin.Int(m.consumerSetups), Panics: admin.Int(m.panics), KeepAlives: admin.Int(m.keepAlives),
	}
	for r, v := range admin.ByLabel(m.deadLettered, "reason") {
		st.DeadLettered[r] = int64(v)
	}
	return st
}
