package runner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// out is one pair message to publish: its message and Nats-Msg-Id, and
// how many pairs it carries.
type out struct {
	msg   *nats.Msg
	id    string
	pairs int
}

// publishSingle publishes the pair of a single v1 envelope as a single v1
// pair, with the envelope's id as its Nats-Msg-Id (as before batches, so
// a foreign tap's envelopes make the same pairs), and settles the
// delivery when it fails.
func (s *Service) publishSingle(ctx context.Context, d *delivery, p *envelope.Pair) {
	o, err := s.singleOut(p)
	if errors.Is(err, envelope.ErrTooLarge) {
		d.msg.DeadLetter(ctx, reasonTooLarge, fmt.Errorf("envelope %s: %w", p.Envelope.ID, err))
		return
	}
	if err != nil {
		// Cannot happen for these types; keep the envelope rather than lose it.
		d.msg.Retry(ctx, fmt.Errorf("encode pair: %w", err))
		return
	}
	s.publish(ctx, d, []out{o})
}

func (s *Service) singleOut(p *envelope.Pair) (out, error) {
	data, err := s.encodePair(p)
	if err != nil {
		return out{}, err
	}
	m := nats.NewMsg(stream.PairSubject(p.Envelope.LaunchID))
	m.Data = data
	return out{msg: m, id: p.Envelope.ID, pairs: 1}, nil
}

// publishBatch publishes the pairs of an envelope batch as pair batches:
// one per launch, split so that each fits in a NATS message. A pair too
// large for any batch goes alone as a single v1 pair with its bodies cut
// to fit, or, when not even that fits, is dead-lettered alone.
func (s *Service) publishBatch(ctx context.Context, d *delivery, pairs []*envelope.Pair) {
	limit := s.payloadLimit()
	var outs []out
	for _, group := range byLaunch(pairs) {
		var chunk []*envelope.Pair
		size := 0
		for _, p := range group {
			est := pairEstimate(p)
			if est > limit {
				o, err := s.singleOut(p)
				if errors.Is(err, envelope.ErrTooLarge) {
					env := p.Envelope
					item := func() ([]byte, error) { return envelope.AppendEnvelopeBatch(nil, []*envelope.Envelope{&env}) }
					if !s.reject(ctx, d, reasonTooLarge, item, fmt.Errorf("envelope %s: %w", env.ID, err)) {
						return
					}
					continue
				}
				if err != nil {
					d.msg.Retry(ctx, fmt.Errorf("encode pair: %w", err))
					return
				}
				outs = append(outs, o)
				continue
			}
			if len(chunk) > 0 && size+est > limit {
				outs = s.appendChunk(outs, chunk, limit)
				chunk, size = nil, 0
			}
			chunk = append(chunk, p)
			size += est
		}
		if len(chunk) > 0 {
			outs = s.appendChunk(outs, chunk, limit)
		}
	}
	if len(outs) > 0 {
		s.publish(ctx, d, outs)
	}
}

// appendChunk frames pairs of one launch as a pair batch; a batch over the
// limit (the estimate fell short: headers that JSON escapes) is split in
// halves, down to single pairs, which are fitted as single v1 pairs.
func (s *Service) appendChunk(outs []out, pairs []*envelope.Pair, limit int) []out {
	size := 0
	for _, p := range pairs {
		size += pairEstimate(p)
	}
	// Sized once: growing the buffer would copy every body again.
	data, err := envelope.AppendPairBatch(make([]byte, 0, min(size, limit)+4096), pairs)
	if err == nil && len(data) <= limit {
		m := nats.NewMsg(stream.PairSubject(pairs[0].Envelope.LaunchID))
		m.Header.Set(envelope.BatchHeader, envelope.BatchVersion)
		m.Data = data
		ids := make([]string, len(pairs))
		for i, p := range pairs {
			ids[i] = p.Envelope.ID
		}
		return append(outs, out{msg: m, id: envelope.BatchID(ids), pairs: len(pairs)})
	}
	if len(pairs) > 1 {
		h := len(pairs) / 2
		return s.appendChunk(s.appendChunk(outs, pairs[:h], limit), pairs[h:], limit)
	}
	// One pair over the limit: its bodies are cut in a single v1 pair. A
	// pair that does not fit even so was caught by the estimate (bodies
	// are most of it); an encoding error cannot happen for these types.
	if o, err := s.singleOut(pairs[0]); err == nil {
		outs = append(outs, o)
	}
	return outs
}

// publish sends the delivery's pair messages asynchronously (the
// publisher's pending window bounds the publishes awaiting their ack in
// the process) and waits for every ack, at most publishTimeout. When one
// fails the delivery is handed back (Retry): its pairs are published
// again, and the stream's duplicate window drops the repeats (same
// Nats-Msg-Ids). The delivery is acked by Handle.
func (s *Service) publish(ctx context.Context, d *delivery, outs []out) {
	futures := make([]jetstream.PubAckFuture, 0, len(outs))
	var err error
	for _, o := range outs {
		var f jetstream.PubAckFuture
		f, err = s.pub.PublishMsgAsync(o.msg, jetstream.WithMsgID(o.id), jetstream.WithStallWait(publishTimeout))
		if err != nil {
			break
		}
		futures = append(futures, f)
	}
	timer := time.NewTimer(publishTimeout)
	defer timer.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case ferr := <-f.Err():
			err = cmpErr(err, ferr)
		case <-timer.C:
			err = cmpErr(err, fmt.Errorf("no publish ack within %s: %w", publishTimeout, context.DeadlineExceeded))
		}
	}
	if errors.Is(err, nats.ErrMaxPayload) && !d.batch {
		// The server's limit is below what the connection announced:
		// republishing the same bytes cannot succeed.
		d.msg.DeadLetter(ctx, reasonTooLarge, fmt.Errorf("publish pair: %w", err))
		return
	}
	if err != nil {
		s.m.publishFailed.Inc()
		s.log.Warn("publishing pairs failed; the delivery will be retried", "messages", len(outs), "err", err)
		d.msg.Retry(ctx, fmt.Errorf("publish pairs: %w", err))
		return
	}
	n := 0
	for _, o := range outs {
		n += o.pairs
		d.tally.add(launchOf(o.msg.Subject, stream.PairsPrefix), countReplayed, "", uint64(o.pairs))
	}
	s.m.published.Add(float64(n))
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// byLaunch groups pairs by launch, keeping their order (a batch usually
// holds one launch).
func byLaunch(pairs []*envelope.Pair) [][]*envelope.Pair {
	if len(pairs) == 0 {
		return nil
	}
	first := pairs[0].Envelope.LaunchID
	same := true
	for _, p := range pairs {
		same = same && p.Envelope.LaunchID == first
	}
	if same {
		return [][]*envelope.Pair{pairs}
	}
	idx := map[string]int{}
	var groups [][]*envelope.Pair
	for _, p := range pairs {
		i, ok := idx[p.Envelope.LaunchID]
		if !ok {
			i = len(groups)
			idx[p.Envelope.LaunchID] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], p)
	}
	return groups
}

// pairEstimate is about the bytes a pair takes in a pair batch: its
// bodies, headers and text fields, and room for the rest of its JSON.
func pairEstimate(p *envelope.Pair) int {
	e := &p.Envelope
	n := 1024 + len(e.ID) + len(e.LaunchID) + len(e.TapID) + len(e.Request.Method) + len(e.Request.Path) +
		len(e.Request.RawQuery) + len(e.Request.Host) + len(p.RunnerID)
	n += len(e.Request.Body) + headerSize(e.Request.Headers) + len(e.Primary.Body) + headerSize(e.Primary.Headers)
	n += outcomeSize(&p.Shadow)
	if p.Secondary != nil {
		n += outcomeSize(p.Secondary)
	}
	return n
}

func outcomeSize(o *envelope.Outcome) int {
	return 128 + len(o.Body) + headerSize(o.Headers) + len(o.Error) + len(o.ErrorKind)
}

func headerSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		n += len(k) + 6
		for _, v := range vs {
			n += len(v) + 3
		}
	}
	return n
}
