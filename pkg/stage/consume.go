package stage

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/nats-io/nats.go/jetstream"
)

// minHeartbeat is the shortest idle heartbeat the server accepts on a pull.
const minHeartbeat = 500 * time.Millisecond

// consume reads the consumer continuously (Consumer.Messages: the client
// keeps a pull open and tops it up, so there is no gap between pulls)
// until ctx ends. A slot is taken before each delivery is read, so at most
// Concurrency Handles run at once and at most FetchBatch deliveries wait
// in the client's buffer. On return every Handle has returned, and the
// deliveries still buffered were handed back.
//
// The stream is re-read from a new iterator after any failure: the
// consumer deleted (the server says so), or two idle heartbeats missed (a
// consumer gone with a leader that did not come back, a stream re-created),
// each time after creating or updating the consumer again. A reconnect
// alone needs nothing: the iterator re-issues its pull on the new
// connection.
func (s *Stage) consume(ctx context.Context, cons jetstream.Consumer) {
	slots := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	// Handlers outlive ctx: a delivery that started is finished and
	// settled during the drain.
	taskCtx := context.WithoutCancel(ctx)
	bo := s.Backoff()
	for ctx.Err() == nil {
		it, err := cons.Messages(s.pullOpts()...)
		if err == nil {
			err = s.read(ctx, taskCtx, it, slots, &wg, &bo)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errDrained) {
			continue
		}
		if c, ok := s.fetchFailed(ctx, err, &bo); ok {
			cons = c
		}
	}
}

func (s *Stage) pullOpts() []jetstream.PullMessagesOpt {
	hb := max(s.cfg.FetchWait/5, minHeartbeat)
	return []jetstream.PullMessagesOpt{
		jetstream.PullMaxMessages(s.cfg.FetchBatch),
		jetstream.PullExpiry(max(s.cfg.FetchWait, 2*hb)),
		jetstream.PullHeartbeat(hb),
		jetstream.WithMessagesErrOnMissingHeartbeat(true),
	}
}

// errDrained ends a read whose iterator was drained because every handler
// stayed busy (see read); the next read starts a new iterator.
var errDrained = errors.New("iterator drained while every handler was busy")

// read hands the iterator's deliveries to the handler until ctx ends (nil)
// or the iterator fails (its error). Either way the iterator is stopped
// and what it still buffered is handed back.
//
// With FetchBatch above 1 the client buffers deliveries the runtime has
// not seen, whose ack deadline runs. When every slot stays busy for a
// keep-alive period (a slow shadow, a ClickHouse outage), read drains the
// iterator: what it buffered is received (held, so kept alive) and handed
// out as slots free, and nothing more is pulled meanwhile (errDrained).
func (s *Stage) read(ctx, taskCtx context.Context, it jetstream.MessagesContext, slots chan struct{}, wg *sync.WaitGroup, bo *retry.Backoff) error {
	// Drain ends the pull and lets Next return what is buffered, then
	// ErrMsgIteratorClosed: on shutdown those go straight back.
	stop := context.AfterFunc(ctx, it.Drain)
	defer func() {
		stop()
		s.refuseBuffered(it)
	}()
	var timer *time.Timer
	if s.cfg.FetchBatch > 1 {
		timer = time.NewTimer(s.keepAliveEvery())
		defer timer.Stop()
	}
	var parked []*Msg
	drained := false
	for {
		var stalled <-chan time.Time
		if timer != nil && !drained {
			timer.Reset(s.keepAliveEvery())
			stalled = timer.C
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil // parked deliveries are held: the drain hands them back
		case <-stalled:
			parked, drained = s.park(it), true
			continue
		}
		if drained {
			if len(parked) == 0 {
				<-slots
				return errDrained
			}
			m := parked[0]
			parked = parked[1:]
			wg.Go(func() {
				defer func() { <-slots }()
				s.handle(taskCtx, m)
			})
			continue
		}
		raw, err := it.Next()
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			// Shutting down: straight back to another process.
			s.refuse(raw)
			<-slots
			continue
		}
		bo.Reset()
		m := s.receive(raw)
		wg.Go(func() {
			defer func() { <-slots }()
			s.handle(taskCtx, m)
		})
	}
}

// park drains the iterator and receives what it buffered, so those
// deliveries are held (kept alive) until a slot takes them.
func (s *Stage) park(it jetstream.MessagesContext) []*Msg {
	it.Drain()
	var out []*Msg
	deadline := time.Now().Add(s.cfg.OpTimeout)
	for left := time.Until(deadline); left > 0; left = time.Until(deadline) {
		raw, err := it.Next(jetstream.NextMaxWait(left))
		if err != nil {
			break
		}
		out = append(out, s.receive(raw))
	}
	if len(out) > 0 {
		s.log.Debug("every handler busy; buffered deliveries taken and kept alive", "deliveries", len(out))
	}
	return out
}

// refuseBuffered hands back what a stopped iterator still holds, waiting
// at most OpTimeout for its drain.
func (s *Stage) refuseBuffered(it jetstream.MessagesContext) {
	it.Drain()
	defer it.Stop()
	deadline := time.Now().Add(s.cfg.OpTimeout)
	for left := time.Until(deadline); left > 0; left = time.Until(deadline) {
		raw, err := it.Next(jetstream.NextMaxWait(left))
		if err != nil {
			return
		}
		s.refuse(raw)
	}
}

// fetchFailed waits out a failed read, then ensures the consumer again: a
// read finds a deleted consumer (or stream) only by failing, and creating
// or updating an existing one changes nothing. It returns the consumer to
// read from next, and false when ctx ended first.
func (s *Stage) fetchFailed(ctx context.Context, err error, bo *retry.Backoff) (jetstream.Consumer, bool) {
	s.m.fetchFailures.Inc()
	delay := bo.Next()
	if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) {
		s.log.Warn("consumer lost; creating it again", "in", delay, "err", err)
	} else {
		s.log.Warn("reading the consumer failed; retrying", "in", delay, "err", err)
	}
	if !retry.Sleep(ctx, delay) {
		return nil, false
	}
	return s.ensureConsumer(ctx)
}

// receive counts a delivery and records it as held.
func (s *Stage) receive(raw jetstream.Msg) *Msg {
	m := &Msg{raw: raw, s: s, delivered: 1}
	m.touched.Store(time.Now().UnixNano())
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

// refuse hands back a delivery read after shutdown began, without
// handing it to the handler. A killed stage sends nothing.
func (s *Stage) refuse(raw jetstream.Msg) {
	if s.killed.Load() {
		return
	}
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
