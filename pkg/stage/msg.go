package stage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// Msg is one delivery handed to a Handler: a single message, or a batch
// of items (an envelope or pair batch) settled as one. Exactly one of Ack,
// Nak, Retry or DeadLetter settles it; later calls do nothing. Until it is
// settled the runtime keeps its ack deadline from expiring (InProgress
// once it is half of AckWait old, then every half), so a short AckWait brings a crashed process's
// deliveries back quickly without cutting a long replay or insert short.
type Msg struct {
	raw       jetstream.Msg
	s         *Stage
	delivered uint64
	settled   atomic.Bool
	// touched is when the ack deadline last restarted (receipt, or the
	// last keep-alive), in Unix nanoseconds.
	touched atomic.Int64
}

// Data is the message body.
func (m *Msg) Data() []byte { return m.raw.Data() }

// Subject is the subject the message was published on.
func (m *Msg) Subject() string { return m.raw.Subject() }

// Header is the value of a header of the message ("" if absent).
func (m *Msg) Header(key string) string { return m.raw.Headers().Get(key) }

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

// Ack acknowledges the delivery (a plain ack: the server does not answer
// it). An ack that cannot be sent now (NATS disconnected and the
// connection's reconnect buffer full) is held by the runtime and sent
// again after the reconnect, the delivery's ack deadline kept alive
// meanwhile, rather than dropped: a dropped ack means a redelivery, and
// work done twice.
//
// It reports whether this call settled the delivery (false: it was
// settled before, and the call did nothing).
func (m *Msg) Ack() bool {
	if !m.settle() {
		return false
	}
	m.s.sendAck(m)
	return true
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
	if err := m.deadLetter(ctx, reason, m.Data(), cause); err != nil {
		m.Nak(m.s.RedeliveryDelay(m.delivered))
		return false
	}
	if f := m.s.cfg.OnDeadLetter; f != nil {
		f(m, reason, m.Data())
	}
	m.Ack()
	return true
}

// DeadLetterItem dead-letters one item of a batch delivery, alone: item
// (the item as its own message, or its raw bytes when it could not be
// decoded) goes to the dead-letter subject with the cause and the
// delivery's subject, counted under reason. The delivery itself is not
// settled: the handler goes on with the other items. On an error (the
// publish failed) the handler hands the whole delivery back (Retry), so
// the item is not lost.
func (m *Msg) DeadLetterItem(ctx context.Context, reason string, item []byte, cause error) error {
	return m.deadLetter(ctx, reason, item, cause)
}

func (m *Msg) deadLetter(ctx context.Context, reason string, data []byte, cause error) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.s.cfg.OpTimeout)
	defer cancel()
	log := m.s.log.With("subject", m.Subject(), "reason", reason, "cause", cause)
	if err := stream.DeadLetter(dctx, m.s.js, m.s.cfg.Name, m.Subject(), data, cause); err != nil {
		m.s.m.deadLetterFailures.Inc()
		log.Warn("dead-letter failed; the message will be redelivered", "err", err)
		return err
	}
	m.s.m.deadLettered.WithLabelValues(reason).Inc()
	log.Warn("dead-lettered")
	return nil
}

// RedeliveryDelay is the delay before the n-th redelivery of a handed-back
// message: 1s, doubling with each delivery, capped at the Backoff's Max.
func (s *Stage) RedeliveryDelay(delivered uint64) time.Duration {
	n := max(delivered, 1)
	return min(time.Second<<min(n-1, 10), s.cfg.Backoff.Max)
}

// sendAck sends m's ack, or holds it for the retry loop (ackRetries).
func (s *Stage) sendAck(m *Msg) {
	err := m.raw.Ack()
	switch {
	case err == nil, errors.Is(err, jetstream.ErrMsgAlreadyAckd):
		s.m.acks.Inc()
	case s.killed.Load():
	default:
		s.m.ackFailures.Inc()
		s.log.Debug("ack not sent; held until NATS is back", "err", err)
		s.unsent.add(m)
	}
}

// retryAcks sends again the acks that could not be sent; it reports how
// many are still held.
func (s *Stage) retryAcks() int {
	msgs := s.unsent.take()
	for _, m := range msgs {
		s.sendAck(m)
	}
	return s.unsent.len()
}

// keepAlive restarts the ack deadline of every delivery held (handed out
// and not settled, or settled with an ack not yet sent) for half of
// AckWait since it last restarted. Called every quarter of AckWait, it
// restarts each deadline before three quarters of it have passed; a
// delivery settled within half of AckWait (most are) costs nothing.
func (s *Stage) keepAlive() {
	now := time.Now()
	due := now.Add(-2 * s.keepAliveEvery()).UnixNano()
	for _, m := range append(s.held.all(), s.unsent.all()...) {
		if m.touched.Load() > due {
			continue
		}
		m.touched.Store(now.UnixNano())
		if err := m.raw.InProgress(); err != nil {
			if !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
				s.log.Debug("could not extend an ack deadline", "err", err)
			}
			continue
		}
		s.m.keepAlives.Inc()
	}
}

// held is a set of deliveries: those handed out and not yet settled, or
// those whose ack waits to be sent.
type held struct {
	mu sync.Mutex
	m  map[*Msg]struct{}
}

func newHeld() held { return held{m: map[*Msg]struct{}{}} }

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

func (h *held) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
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

// take empties the set and returns what it held.
func (h *held) take() []*Msg {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Msg, 0, len(h.m))
	for m := range h.m {
		out = append(out, m)
	}
	clear(h.m)
	return out
}
