package stage

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// Msg is one delivery handed to a Handler. Exactly one of Ack, AckNoWait,
// Nak, Retry or DeadLetter settles it; later calls do nothing.
type Msg struct {
	raw       jetstream.Msg
	s         *Stage
	delivered uint64
	settled   atomic.Bool
}

// Data is the message body.
func (m *Msg) Data() []byte { return m.raw.Data() }

// Subject is the subject the message was published on.
func (m *Msg) Subject() string { return m.raw.Subject() }

// Delivered is how many times the server has delivered this message, this
// time included (1 on the first delivery).
func (m *Msg) Delivered() uint64 { return m.delivered }

// settle marks the delivery settled and reports whether it was not yet.
func (m *Msg) settle() bool {
	if !m.settled.CompareAndSwap(false, true) {
		return false
	}
	m.s.held.remove(m)
	m.s.m.inFlight.Dec()
	return true
}

// Ack acknowledges the delivery and waits for the server's confirmation
// (at most OpTimeout), so the stream and the counters agree once it
// returns. An unconfirmed ack is counted and logged: the message may be
// redelivered, and the stage's output must tolerate the repeat.
func (m *Msg) Ack(ctx context.Context) error {
	if !m.settle() {
		return nil
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.s.cfg.OpTimeout)
	defer cancel()
	err := m.acked(m.raw.DoubleAck(actx))
	if err != nil {
		m.s.log.Warn("ack not confirmed; the message may be redelivered", "subject", m.Subject(), "err", err)
	}
	return err
}

// AckNoWait acknowledges the delivery without waiting for the server (a
// batch's many acks); the final flush of the connection at shutdown still
// pushes it out. A failure is counted, not logged: the caller logs once
// for its batch.
func (m *Msg) AckNoWait() error {
	if !m.settle() {
		return nil
	}
	return m.acked(m.raw.Ack())
}

func (m *Msg) acked(err error) error {
	if err != nil {
		m.s.m.ackFailures.Inc()
		return err
	}
	m.s.m.acks.Inc()
	return nil
}

// Nak hands the delivery back for redelivery after delay (0: at once).
func (m *Msg) Nak(delay time.Duration) {
	if !m.settle() {
		return
	}
	m.s.m.naks.Inc()
	var err error
	if delay > 0 {
		err = m.raw.NakWithDelay(delay)
	} else {
		err = m.raw.Nak()
	}
	if err != nil {
		// NATS is unreachable: the ack deadline brings the message back.
		m.s.log.Debug("nak not sent", "err", err)
	}
}

// Retry hands the delivery back with a delay growing with its deliveries
// (RedeliveryDelay). On its last allowed delivery (the consumer's
// MaxDeliver) it is dead-lettered with ReasonMaxDeliver instead, since the
// server would otherwise stop redelivering it and leave it stranded.
func (m *Msg) Retry(ctx context.Context, cause error) {
	if md := m.s.cfg.Consumer.MaxDeliver; md > 0 && m.delivered >= uint64(md) {
		m.DeadLetter(ctx, ReasonMaxDeliver, fmt.Errorf("gave up after %d deliveries: %w", m.delivered, cause))
		return
	}
	m.Nak(m.s.RedeliveryDelay(m.delivered))
}

// DeadLetter publishes the message unchanged to the stage's dead-letter
// subject with the cause in the Darklaunch-Reason header, counts it under
// reason, and acks it. If the dead-letter publish fails the delivery is
// handed back (Nak, RedeliveryDelay) instead, and DeadLetter reports false.
func (m *Msg) DeadLetter(ctx context.Context, reason string, cause error) bool {
	if m.settled.Load() {
		return false
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.s.cfg.OpTimeout)
	defer cancel()
	log := m.s.log.With("subject", m.Subject(), "reason", reason, "cause", cause)
	if err := stream.DeadLetter(dctx, m.s.js, m.s.cfg.Name, m.Subject(), m.Data(), cause); err != nil {
		m.s.m.deadLetterFailures.Inc()
		log.Warn("dead-letter failed; the message will be redelivered", "err", err)
		m.Nak(m.s.RedeliveryDelay(m.delivered))
		return false
	}
	m.s.m.deadLettered.WithLabelValues(reason).Inc()
	if f := m.s.cfg.OnDeadLetter; f != nil {
		f(m, reason, m.Data())
	}
	log.Warn("dead-lettered")
	// Waiting for the ack's confirmation keeps a message from being
	// dead-lettered twice in the common case.
	_ = m.Ack(dctx)
	return true
}

// InProgress restarts the delivery's ack deadline (a batch held through a
// slow insert).
func (m *Msg) InProgress() error { return m.raw.InProgress() }

// RedeliveryDelay is the delay before the n-th redelivery of a handed-back
// message: 1s, doubling with each delivery, capped at the Backoff's Max.
func (s *Stage) RedeliveryDelay(delivered uint64) time.Duration {
	n := max(delivered, 1)
	return min(time.Second<<min(n-1, 10), s.cfg.Backoff.Max)
}

// held is the set of deliveries handed out and not yet settled.
type held struct {
	mu sync.Mutex
	m  map[*Msg]struct{}
}

func (h *held) add(m *Msg) {
	h.mu.Lock()
	h.m[m] = struct{}{}
	h.mu.Unlock()
}

func (h *held) remove(m *Msg) {
	h.mu.Lock()
	delete(h.m, m)
	h.mu.Unlock()
}

func (h *held) all() []*Msg {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Msg, 0, len(h.m))
	for m := range h.m {
		out = append(out, m)
	}
	return out
}
