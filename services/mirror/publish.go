package mirror

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sourcegraph/conc"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// The publisher. The request path only enqueues: a non-blocking send to a
// channel, within a budget of envelopes and bytes (MIRROR_QUEUE_SIZE,
// MIRROR_QUEUE_MAX_BYTES) that covers everything the publisher holds, from
// the queue to the stream's ack. Publisher goroutines take envelopes from
// the queue, seal them and pack those of one launch into a batch (one NATS
// message, envelope.AppendEnvelopeBatch), flushed when it holds
// MIRROR_BATCH_MAX_ENVELOPES or MIRROR_BATCH_MAX_BYTES, or when its first
// envelope has waited MIRROR_BATCH_MAX_DELAY. A batch is immutable once
// flushed: a retry sends the same bytes under the same Nats-Msg-Id
// (envelope.BatchID), so the stream's duplicate window stores it once. A
// failed publish (NATS away, a leader election, an ack lost) goes to the
// retry list, retried with backoff until MIRROR_PUBLISH_RETRY_FOR after its
// first send; an ack that says "duplicate" means an earlier attempt was
// stored, and counts as published.
//
// Every envelope the tap sampled is, at any moment, exactly one of:
// published, dropped (by reason), or held by the publisher (queue_depth).

// queued is an envelope waiting for a publisher, with the client's own
// request headers: before the launch's capture policy dropped or replaced
// some (env.Request.Headers is after it), and shared by the envelopes of
// the request, read-only. The publisher masks their credentials where the
// primary's response echoes them (seal.go). charge is what the envelope
// holds of MIRROR_QUEUE_MAX_BYTES, est its estimated size in a batch.
type queued struct {
	env    *envelope.Envelope
	client http.Header
	charge int64
	est    int
}

// batch is one NATS message: envelopes of one launch.
type batch struct {
	launch string
	// envs and est (the estimated encoded size) while the batch fills;
	// envs is released once the batch is encoded.
	envs []*envelope.Envelope
	est  int
	// n is the number of envelopes, charge the bytes it holds of the
	// queue's budget (its envelopes', then its encoded data's).
	n      int
	charge int64
	// deadline is when a filling batch is flushed at the latest.
	deadline time.Time

	// Once flushed: the message (subject, data, Nats-Msg-Id), sent as is
	// by every attempt.
	subject string
	data    []byte
	header  nats.Header
	// giveUp is when retrying ends (first send + MIRROR_PUBLISH_RETRY_FOR);
	// attempts counts sends, due is when the next retry may go.
	giveUp   time.Time
	attempts int
	due      time.Time
}

// publishing is the publisher's shared state (the Service's pub field).
type publishing struct {
	// held counts the envelopes the publisher holds, from enqueue until
	// they are counted published or dropped: the budget of
	// MIRROR_QUEUE_SIZE, and the queue_depth gauge.
	held atomic.Int64

	mu sync.Mutex
	// inflight maps each message sent and not answered yet to its batch
	// (nats.go hands the same *nats.Msg to the ack and error callbacks).
	inflight map[*nats.Msg]*batch
	// retries are batches waiting for their next attempt; closed is set
	// at the end of the drain, after which a failure is a shutdown drop.
	retries retryHeap
	closed  bool
	// wake tells the retrier that a batch failed or the last in-flight
	// message was answered.
	wake chan struct{}
}

func (p *publishing) init() {
	p.inflight = make(map[*nats.Msg]*batch)
	p.wake = make(chan struct{}, 1)
}

func (p *publishing) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// enqueue hands an envelope to the publishers without ever blocking the
// request: when the publisher holds MIRROR_QUEUE_SIZE envelopes or
// MIRROR_QUEUE_MAX_BYTES, it is dropped as queue_full.
func (s *Service) enqueue(env *envelope.Envelope, client http.Header) {
	if s.pub.held.Add(1) > int64(s.cfg.QueueSize) {
		s.pub.held.Add(-1)
		s.drop(env.LaunchID, dropQueueFull, 1)
		return
	}
	// It holds of MIRROR_QUEUE_MAX_BYTES the capacity of its body buffers,
	// its headers and an allowance for the rest.
	headers := headerSize(env.Request.Headers) + headerSize(env.Primary.Headers)
	size := int64(cap(env.Request.Body)+cap(env.Primary.Body)+headers) + 512
	if s.queueBytes.Add(size) > s.cfg.QueueMaxBytes {
		s.release(1, size)
		s.drop(env.LaunchID, dropQueueFull, 1)
		return
	}
	est := len(env.Request.Body) + len(env.Primary.Body) + len(env.Request.Path) + len(env.Request.RawQuery) + headers + 256
	select {
	case s.queue <- queued{env, client, size, est}:
	default: // cannot happen: the channel holds MIRROR_QUEUE_SIZE
		s.release(1, size)
		s.drop(env.LaunchID, dropQueueFull, 1)
	}
}

// headerSize approximates the memory (and the JSON) of a header map.
func headerSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		n += len(k) + 48
		for _, v := range vs {
			n += len(v) + 16
		}
	}
	return n
}

// release returns n envelopes and bytes to the queue's budget.
func (s *Service) release(n int, bytes int64) {
	s.queueBytes.Add(-bytes)
	s.pub.held.Add(-int64(n))
}

// published counts n envelopes of a launch acknowledged by the stream:
// with drop (metrics.go), the one place the publisher counts an outcome.
func (s *Service) published(launchID string, n int) {
	s.stats.published.Add(float64(n))
	s.acct.ledger.Published(launchID, uint64(n))
}

// publishers are the goroutines that publish: the batchers and the
// retrier.
type publishers struct {
	js       jetstream.JetStream
	draining chan struct{}
	// batchersDone is closed once every batcher has returned.
	batchersDone chan struct{}
	batchers     conc.WaitGroup
	retrier      conc.WaitGroup
}

// startPublishing starts MIRROR_PUBLISHERS batchers and the retrier.
func (s *Service) startPublishing(js jetstream.JetStream, nc *nats.Conn) *publishers {
	p := &publishers{js: js, draining: make(chan struct{}), batchersDone: make(chan struct{})}
	limit := func() int { return payloadLimit(nc.MaxPayload()) }
	for range s.cfg.Publishers {
		p.batchers.Go(func() { s.batcher(js, limit, p.draining) })
	}
	p.retrier.Go(func() { s.retrier(js, nc, p.draining, p.batchersDone) })
	return p
}

// drainPublishing runs at shutdown, once no request is in flight: the
// batchers publish what is queued and the retrier retries what failed
// until everything is answered or MIRROR_DRAIN_TIMEOUT passes; then what
// is left is dropped as shutdown. When it returns, every envelope the tap
// sampled is counted published or dropped. p is nil when NATS was never
// connected.
func (s *Service) drainPublishing(p *publishers) {
	s.drainDeadline = time.Now().Add(s.cfg.DrainTimeout)
	if p != nil {
		close(p.draining)
		p.batchers.Wait()
		close(p.batchersDone)
		p.retrier.Wait()
		// No more retries: what fails from now on is dropped.
		for _, b := range s.pub.close() {
			s.give(b, dropShutdown)
		}
		if n := p.js.PublishAsyncPending(); n > 0 {
			s.log.Warn("envelopes not acknowledged within MIRROR_DRAIN_TIMEOUT", "pending", n)
		}
		// Fails what is still pending through onPublishErr, so it is counted.
		p.js.CleanupPublisher()
		// nats.go forgets an ack before it calls onAck, so CleanupPublisher
		// can return while an onAck still runs: wait until every batch has
		// been counted, published or dropped.
		s.outcomes.Wait()
	}
	s.dropQueued()
}

// dropQueued empties the queue at shutdown, counting what is left.
func (s *Service) dropQueued() {
	for {
		select {
		case q := <-s.queue:
			s.release(1, q.charge)
			s.drop(q.env.LaunchID, dropShutdown, 1)
		default:
			return
		}
	}
}

// payloadLimit is the largest message data the server takes: its
// max_payload (1 MiB when not known yet) less room for the headers.
func payloadLimit(maxPayload int64) int {
	if maxPayload <= 0 {
		maxPayload = 1 << 20
	}
	return int(maxPayload) - 512
}

// batcher is one publisher goroutine: it fills a batch per launch from the
// queue and flushes it when full or old enough. Once draining is closed it
// publishes what is queued until the queue is empty or the drain deadline
// passes, flushes its batches and returns.
func (s *Service) batcher(js jetstream.JetStream, limit func() int, draining <-chan struct{}) {
	open := make(map[string]*batch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	// arm sets the timer for the oldest open batch's deadline.
	arm := func() {
		if armed || len(open) == 0 {
			return
		}
		var first time.Time
		for _, b := range open {
			if first.IsZero() || b.deadline.Before(first) {
				first = b.deadline
			}
		}
		timer.Reset(time.Until(first))
		armed = true
	}
	flush := func(b *batch) {
		delete(open, b.launch)
		s.flush(js, b, limit())
	}
	add := func(q queued) {
		env, est := s.prepare(q), q.est
		b := open[env.LaunchID]
		if b != nil && b.est+est > s.cfg.BatchMaxBytes {
			flush(b) // it does not fit: a new batch
			b = nil
		}
		if b == nil {
			b = &batch{launch: env.LaunchID, deadline: time.Now().Add(s.cfg.BatchMaxDelay)}
			open[env.LaunchID] = b
		}
		b.envs = append(b.envs, env)
		b.est += est
		b.n++
		b.charge += q.charge
		if b.n >= s.cfg.BatchMaxEnvelopes || b.est >= s.cfg.BatchMaxBytes {
			flush(b)
		}
		arm()
	}
	for {
		select {
		case q := <-s.queue:
			add(q)
		case <-timer.C:
			armed = false
			now := time.Now()
			for _, b := range open {
				if !now.Before(b.deadline) {
					flush(b)
				}
			}
			arm()
		case <-draining:
			timer.Stop()
		drain:
			for time.Now().Before(s.drainDeadline) {
				select {
				case q := <-s.queue:
					add(q)
				default:
					break drain
				}
			}
			for _, b := range open {
				flush(b)
			}
			return
		}
	}
}

// prepare seals a queued envelope's credentials and gives it its id.
func (s *Service) prepare(q queued) *envelope.Envelope {
	env := q.env
	s.protection.protect(env, q.client)
	if s.publishHook != nil {
		s.publishHook(env)
	}
	env.ID = envelope.NewID()
	return env
}

// flush encodes a batch and sends it for the first time. A batch whose
// encoding exceeds the server's max payload (the estimate was short) is
// split in two; a single envelope has its bodies cut to fit (flagged
// truncated), and is dropped as too_large if even that does not fit.
func (s *Service) flush(js jetstream.JetStream, b *batch, limit int) {
	data, err := s.encode(b.envs, b.est, limit)
	if errors.Is(err, errSplit) {
		half := len(b.envs) / 2
		charge := b.charge * int64(half) / int64(b.n)
		first := &batch{launch: b.launch, envs: b.envs[:half], n: half, charge: charge, est: b.est / 2}
		second := &batch{launch: b.launch, envs: b.envs[half:], n: b.n - half, charge: b.charge - charge, est: b.est / 2}
		s.flush(js, first, limit)
		s.flush(js, second, limit)
		return
	}
	if err != nil {
		reason := dropEncodeError
		if errors.Is(err, errTooLarge) {
			reason = dropTooLarge
			s.logThrottled(&s.lastPublishErrLog, slog.LevelWarn, "envelope does not fit in a NATS message", "err", err)
		} else {
			s.logThrottled(&s.lastPublishErrLog, slog.LevelError, "cannot encode envelopes", "err", err)
		}
		s.release(b.n, b.charge)
		s.drop(b.launch, reason, b.n)
		return
	}
	b.subject = stream.EnvelopeSubject(b.launch)
	b.data = data
	b.header = s.messageHeader(b.envs)
	// The envelopes are in data now: hold its bytes instead.
	s.queueBytes.Add(int64(cap(data)) - b.charge)
	b.charge = int64(cap(data))
	b.envs = nil
	b.giveUp = time.Now().Add(s.cfg.PublishRetryFor)
	s.outcomes.Add(1)
	s.send(js, b)
}

// errSplit: a batch of several envelopes encodes beyond the limit.
var errSplit = errors.New("batch over the max payload")

// errTooLarge: the envelope does not fit in the server's max payload.
var errTooLarge = envelope.ErrTooLarge

// single reports whether the tap publishes single v1 JSON envelopes
// (MIRROR_BATCH_MAX_ENVELOPES=1) instead of batches.
func (s *Service) single() bool { return s.cfg.BatchMaxEnvelopes == 1 }

// encode returns the message data of envs: a batch, or one v1 envelope.
func (s *Service) encode(envs []*envelope.Envelope, est, limit int) ([]byte, error) {
	if s.single() {
		data, err := json.Marshal(envs[0])
		if err != nil {
			return nil, err
		}
		return fitPayload(envs[0], data, limit)
	}
	data, err := envelope.AppendEnvelopeBatch(make([]byte, 0, min(est, limit)+64), envs)
	if err != nil || len(data) <= limit {
		return data, err
	}
	if len(envs) > 1 {
		return nil, errSplit
	}
	if err := envelope.FitBatchItem(envs[0], len(data), limit); err != nil {
		return nil, err
	}
	if data, err = envelope.AppendEnvelopeBatch(data[:0], envs); err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, errTooLarge
	}
	return data, nil
}

// messageHeader is the headers of the message of envs: its Nats-Msg-Id
// (the envelope's id, or the batch's) and, for a batch, the batch marker.
func (s *Service) messageHeader(envs []*envelope.Envelope) nats.Header {
	if s.single() {
		return nats.Header{jetstream.MsgIDHeader: {envs[0].ID}}
	}
	ids := make([]string, len(envs))
	for i, e := range envs {
		ids[i] = e.ID
	}
	return nats.Header{
		jetstream.MsgIDHeader: {envelope.BatchID(ids)},
		envelope.BatchHeader:  {envelope.BatchVersion},
	}
}

// send publishes a batch asynchronously; the outcome comes to onAck or
// onPublishErr, or, when the publish fails at once (NATS away, too many
// acks pending), to failed.
func (s *Service) send(js jetstream.JetStream, b *batch) {
	b.attempts++
	m := &nats.Msg{Subject: b.subject, Data: b.data, Header: b.header}
	s.pub.mu.Lock()
	s.pub.inflight[m] = b
	s.pub.mu.Unlock()
	s.stats.pending.Add(float64(b.n))
	if _, err := js.PublishMsgAsync(m); err != nil {
		s.pub.mu.Lock()
		delete(s.pub.inflight, m)
		s.pub.mu.Unlock()
		s.stats.pending.Sub(float64(b.n))
		s.failed(b, err)
	}
}

// answered removes a message from the in-flight set and returns its batch
// (nil if it was not in flight).
func (s *Service) answered(m *nats.Msg) *batch {
	s.pub.mu.Lock()
	b := s.pub.inflight[m]
	delete(s.pub.inflight, m)
	last := len(s.pub.inflight) == 0
	s.pub.mu.Unlock()
	if b != nil {
		s.stats.pending.Sub(float64(b.n))
		if last {
			s.pub.signal()
		}
	}
	return b
}

// onAck runs on the NATS ack goroutine: it must not block. A duplicate ack
// answers a retry whose earlier attempt was stored (its ack was lost): the
// envelopes are in the stream once, and published.
func (s *Service) onAck(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	b := s.answered(m)
	if b == nil {
		return
	}
	if ack.Duplicate {
		s.stats.duplicateAcks.Add(float64(b.n))
	}
	s.stats.batches.Inc()
	s.release(b.n, b.charge)
	s.published(b.launch, b.n)
	s.outcomes.Done()
}

// onPublishErr runs for every async publish that failed after it was sent:
// an error ack, no stream, an ack timeout, a disconnect, or the cleanup at
// shutdown.
func (s *Service) onPublishErr(_ jetstream.JetStream, m *nats.Msg, err error) {
	if b := s.answered(m); b != nil {
		s.failed(b, err)
	}
}

// failed decides what becomes of a batch whose attempt failed: retried
// later, or dropped (for good reasons only, or once its retry time is
// over).
func (s *Service) failed(b *batch, err error) {
	reason, retry := classify(err)
	// No stream may answer because it is gone (deleted, or lost with
	// its server's storage): have the stream loop ensure it (at most
	// once a second).
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		select {
		case s.ensureAgain <- struct{}{}:
		default:
		}
	}
	if retry {
		wait := retryWait(b.attempts)
		if now := time.Now(); now.Add(wait).Before(b.giveUp) {
			b.due = now.Add(wait)
			if s.pub.park(b) {
				s.pub.signal()
				return
			}
			reason = dropShutdown
		}
	}
	if reason == dropNATSError {
		s.logThrottled(&s.lastPublishErrLog, slog.LevelWarn, "envelopes not acknowledged; dropping them",
			"err", err, "attempts", b.attempts)
	}
	s.give(b, reason)
}

// give drops a flushed batch for reason.
func (s *Service) give(b *batch, reason dropReason) {
	s.release(b.n, b.charge)
	s.drop(b.launch, reason, b.n)
	s.outcomes.Done()
}

// classify says why a failed publish is dropped, and whether it is worth
// retrying. Everything is retried (for MIRROR_PUBLISH_RETRY_FOR) but what
// cannot succeed: a message over the max payload, and the publisher closed
// at shutdown. A leader election shows up as no responders, timeouts,
// "jetstream not enabled" or 503 errors, a restart as disconnects: all
// retried, under the same Nats-Msg-Id.
func classify(err error) (dropReason, bool) {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrJetStreamPublisherClosed), errors.Is(err, nats.ErrConnectionClosed):
		return dropShutdown, false
	case errors.Is(err, nats.ErrMaxPayload):
		return dropTooLarge, false
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return dropTooLarge, false
	}
	return dropNATSError, true
}

// retryWait is the backoff before attempt n+1: 50 ms doubling to 2 s,
// jittered by up to a quarter.
func retryWait(attempts int) time.Duration {
	d := 50 * time.Millisecond << min(attempts-1, 6)
	d = min(d, 2*time.Second)
	return d - rand.N(d/4+1)
}

// fitPayload returns data when it fits in limit bytes (the NATS server's
// max_payload, 1 MiB by default, less than a 1 MiB body once base64 encoded).
// Otherwise it cuts the captured bodies, sharing the room fairly between
// request and response and flagging them truncated (BodySize keeps the full
// size), and encodes the envelope again (envelope.FitEnvelope).
func fitPayload(env *envelope.Envelope, data []byte, limit int) ([]byte, error) {
	return envelope.FitEnvelope(env, data, limit)
}
