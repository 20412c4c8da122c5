package mirror

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// queued is an envelope waiting for a publisher, with the client's own
// request headers: before the launch's capture policy dropped or replaced
// some (env.Request.Headers is after it), and shared by the envelopes of
// the request, read-only. The publisher masks their credentials where the
// primary's response echoes them (seal.go).
type queued struct {
	env    *envelope.Envelope
	client http.Header
}

// enqueue hands an envelope to the publishers without ever blocking the
// request: when the queue is full (in count or in bytes) it is dropped.
func (s *Service) enqueue(env *envelope.Envelope, client http.Header) {
	size := envSize(env)
	if s.queueBytes.Add(size) > s.cfg.QueueMaxBytes {
		s.queueBytes.Add(-size)
		s.drop(env.LaunchID, dropQueueFull, 1)
		return
	}
	select {
	case s.queue <- queued{env, client}:
	default:
		s.queueBytes.Add(-size)
		s.drop(env.LaunchID, dropQueueFull, 1)
	}
}

// envSize is what an envelope is charged against MIRROR_QUEUE_MAX_BYTES: its
// bodies plus a rough allowance for the rest.
func envSize(env *envelope.Envelope) int64 {
	return int64(len(env.Request.Body)+len(env.Primary.Body)) + 512
}

// dropQueued empties the queue at shutdown, counting what is left.
func (s *Service) dropQueued() {
	for {
		select {
		case q := <-s.queue:
			s.queueBytes.Add(-envSize(q.env))
			s.drop(q.env.LaunchID, dropShutdown, 1)
		default:
			return
		}
	}
}

// publisher drains the queue until draining is closed, then publishes what
// is left until the queue is empty or the drain deadline passes.
func (s *Service) publisher(js jetstream.JetStream, nc *nats.Conn, draining <-chan struct{}) {
	for {
		select {
		case q := <-s.queue:
			s.publish(js, nc, q)
		case <-draining:
			for time.Now().Before(s.drainDeadline) {
				select {
				case q := <-s.queue:
					s.publish(js, nc, q)
				default:
					return
				}
			}
			return
		}
	}
}

// publish encodes one envelope and publishes it asynchronously; the outcome
// is counted by onAck or onPublishErr. While NATS is away, PublishAsync
// fails at once (the connection buffers nothing), so the envelope is
// dropped and the publisher moves on.
func (s *Service) publish(js jetstream.JetStream, nc *nats.Conn, q queued) {
	env := q.env
	s.queueBytes.Add(-envSize(env))
	s.protection.protect(env, q.client)
	if s.publishHook != nil {
		s.publishHook(env)
	}
	env.ID = envelope.NewID()
	data, err := json.Marshal(env)
	if err != nil {
		s.drop(env.LaunchID, dropEncodeError, 1)
		s.logThrottled(&s.lastPublishErrLog, slog.LevelError, "cannot encode envelope", "err", err)
		return
	}
	if data, err = fitPayload(env, data, int(nc.MaxPayload())); err != nil {
		s.drop(env.LaunchID, dropTooLarge, 1)
		s.logThrottled(&s.lastPublishErrLog, slog.LevelWarn, "envelope does not fit in a NATS message", "err", err)
		return
	}
	s.stats.pending.Inc()
	s.outcomes.Add(1)
	if _, err := js.PublishAsync(stream.EnvelopeSubject(env.LaunchID), data, jetstream.WithMsgID(env.ID)); err != nil {
		s.stats.pending.Dec()
		s.drop(env.LaunchID, dropNATSError, 1)
		s.outcomes.Done()
		s.logThrottled(&s.lastPublishErrLog, slog.LevelWarn, "cannot publish envelopes; dropping them", "err", err)
	}
}

// onAck runs on the NATS ack goroutine: it must not block.
func (s *Service) onAck(_ jetstream.JetStream, msg *nats.Msg, _ *jetstream.PubAck) {
	s.stats.pending.Dec()
	s.stats.published.Inc()
	s.acct.ledger.Published(launchOfSubject(msg.Subject), 1)
	s.outcomes.Done()
}

// onPublishErr runs for every async publish that failed after it was sent:
// an error ack, no stream, an ack timeout, a disconnect, or the cleanup at
// shutdown.
func (s *Service) onPublishErr(_ jetstream.JetStream, msg *nats.Msg, err error) {
	s.stats.pending.Dec()
	reason := dropNATSError
	switch {
	case errors.Is(err, jetstream.ErrJetStreamPublisherClosed):
		reason = dropShutdown
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		select {
		case s.ensureAgain <- struct{}{}:
		default:
		}
	}
	s.drop(launchOfSubject(msg.Subject), reason, 1)
	if reason == dropNATSError {
		s.logThrottled(&s.lastPublishErrLog, slog.LevelWarn, "envelope not acknowledged; dropping it", "err", err)
	}
	s.outcomes.Done()
}

// errTooLarge: the envelope does not fit in the server's max payload.
var errTooLarge = envelope.ErrTooLarge

// fitPayload returns data when it fits in limit bytes (the NATS server's
// max_payload, 1 MiB by default, less than a 1 MiB body once base64 encoded).
// Otherwise it cuts the captured bodies, sharing the room fairly between
// request and response and flagging them truncated (BodySize keeps the full
// size), and encodes the envelope again (envelope.FitEnvelope).
func fitPayload(env *envelope.Envelope, data []byte, limit int) ([]byte, error) {
	return envelope.FitEnvelope(env, data, limit)
}
