package stage

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/nats-io/nats.go/jetstream"
)

// minFetchWait keeps a pull request's expiry meaningful to the server.
const minFetchWait = 10 * time.Millisecond

// consume runs a concurrent stage until ctx ends. It reserves a slot for
// every delivery before asking for it, so each fetched delivery starts at
// once (its ack deadline is not spent waiting in a local queue) and at most
// Concurrency are handled at a time. On return every Handle has returned.
func (s *Stage) consume(ctx context.Context, cons jetstream.Consumer) {
	slots := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	// Handlers outlive ctx: a delivery that started is finished and
	// settled during the drain.
	taskCtx := context.WithoutCancel(ctx)
	bo := s.Backoff()
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil { // select picks at random when both are ready
			<-slots
			return
		}
		n := 1
	fill:
		for n < s.cfg.FetchBatch {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(s.cfg.FetchWait))
		got := 0
		if err == nil {
			for raw := range batch.Messages() {
				got++
				if ctx.Err() != nil {
					// Shutting down: straight back to another process.
					s.refuse(raw)
					<-slots
					continue
				}
				m := s.receive(raw)
				wg.Go(func() {
					defer func() { <-slots }()
					s.handle(taskCtx, m)
				})
			}
			err = batch.Error()
		}
		for range n - got {
			<-slots
		}
		if err == nil || ctx.Err() != nil {
			bo.Reset()
			continue
		}
		if c, ok := s.fetchFailed(ctx, err, &bo); ok {
			cons = c
		}
	}
}

// consumeBatches runs a Batcher until ctx ends, then gives it a last Flush
// under DrainTimeout. It pulls only what Next allows, and nothing while a
// Flush is in progress (a failing insert holds one batch, not the stream).
func (s *Stage) consumeBatches(ctx context.Context, cons jetstream.Consumer) {
	bo := s.Backoff()
	for ctx.Err() == nil {
		p := s.batch.Next()
		if p.Flush {
			s.batch.Flush(ctx)
			continue
		}
		wait := s.cfg.FetchWait
		if p.Wait > 0 {
			wait = min(wait, p.Wait)
		}
		opts := []jetstream.FetchOpt{jetstream.FetchMaxWait(max(wait, minFetchWait))}
		if p.MaxBytes > 0 {
			opts = append(opts, jetstream.FetchMaxBytes(p.MaxBytes))
		}
		var err error
		var batch jetstream.MessageBatch
		if batch, err = cons.Fetch(max(p.Max, 1), opts...); err == nil {
			for raw := range batch.Messages() {
				s.handle(ctx, s.receive(raw))
			}
			err = batch.Error()
		}
		if err == nil || ctx.Err() != nil {
			bo.Reset()
			continue
		}
		if c, ok := s.fetchFailed(ctx, err, &bo); ok {
			cons = c
		}
	}
	if s.killed.Load() {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	s.batch.Flush(dctx)
}

// fetchFailed waits out a failed pull, then ensures the consumer again: a
// pull finds a deleted consumer (or stream) only by failing, and creating
// or updating an existing one changes nothing. It returns the consumer to
// pull from next, and false when ctx ended first.
func (s *Stage) fetchFailed(ctx context.Context, err error, bo *retry.Backoff) (jetstream.Consumer, bool) {
	s.m.fetchFailures.Inc()
	delay := bo.Next()
	s.log.Warn("pull failed; retrying", "in", delay, "err", err)
	if !retry.Sleep(ctx, delay) {
		return nil, false
	}
	return s.ensureConsumer(ctx)
}

// receive counts a delivery and records it as held.
func (s *Stage) receive(raw jetstream.Msg) *Msg {
	m := &Msg{raw: raw, s: s, delivered: 1}
	if md, err := raw.Metadata(); err == nil && md.NumDelivered > 0 {
		m.delivered = md.NumDelivered
	}
	s.m.received.Inc()
	if m.delivered > 1 {
		s.m.redelivered.Inc()
	}
	s.m.inFlight.Inc()
	s.held.add(m)
	return m
}

// refuse hands back a delivery fetched after shutdown began, without
// handing it to the handler.
func (s *Stage) refuse(raw jetstream.Msg) {
	s.m.naks.Inc()
	if err := raw.Nak(); err != nil {
		s.log.Debug("nak not sent", "err", err)
	}
}

// handle calls the handler, recovering a panic: the worker's top. The
// delivery a handler panicked on is counted and dead-lettered (ReasonPanic,
// the panic's value as the reason), not handed back: a message that makes
// the handler panic would do so on every delivery. The stage goes on.
func (s *Stage) handle(ctx context.Context, m *Msg) {
	defer func() {
		if r := recover(); r != nil {
			s.m.panics.Inc()
			s.log.Error("handler panicked; delivery dead-lettered", "subject", m.Subject(), "panic", fmt.Sprint(r),
				"stack", string(debug.Stack()))
			m.DeadLetter(ctx, ReasonPanic, fmt.Errorf("%w: %v", ErrPanic, r))
		}
	}()
	s.h.Handle(ctx, m)
}
