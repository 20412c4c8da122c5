// Package runner is the shadow-runner service: it pulls envelopes from the
// durable JetStream consumer shared by every runner process, replays each
// request against its launch's shadow URL (and, concurrently, against its
// secondary URL when the launch names one, for noise cancellation), and
// publishes the envelope with the outcomes as a pair. An envelope is acked
// only after its pair is stored, so a crash or a NATS outage loses nothing
// (a replay may then be repeated; the pair is deduplicated by envelope id).
// Scaling out is running more processes.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sourcegraph/conc"
	"github.com/sourcegraph/conc/pool"
)

// Stage is this service's name in dead-letter subjects.
const Stage = "shadow-runner"

const (
	// fetchWait bounds one pull request, and so how long shutdown waits
	// for the fetch in progress.
	fetchWait = time.Second
	// publishTimeout bounds one pair or dead-letter publish and one ack.
	publishTimeout = 5 * time.Second
	// maxBackoff caps retry delays (setup, fetch errors, redeliveries).
	maxBackoff = 30 * time.Second
	// setupTimeout bounds one start-up attempt (streams, bucket, consumer).
	setupTimeout = 10 * time.Second
)

// ErrNotConnected is reported by the NATS health check.
var ErrNotConnected = errors.New("not connected to NATS")

// Service is one shadow-runner process.
type Service struct {
	cfg       Config
	log       *slog.Logger
	admin     *admin.Server
	m         *metrics
	client    *http.Client
	transport *http.Transport

	nc      atomic.Pointer[nats.Conn]
	js      jetstream.JetStream
	watcher *launch.Watcher
	store   *launch.Store
	fleet   *fleet
	cap     *loadCap

	ready     chan struct{}
	readyOnce sync.Once
	ran       atomic.Bool
}

// New validates cfg, starts the admin server on cfg.AdminAddr and returns a
// service ready to Run. It does not touch NATS.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("runner_id", cfg.ID)
	s := &Service{cfg: cfg, log: log, ready: make(chan struct{})}
	s.client, s.transport = newClient(&s.cfg)
	s.admin = admin.New(log)
	s.m = newMetrics(s.admin.Registry)
	s.admin.AddCheck("nats", s.checkNATS)
	if err := s.admin.Start(cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("admin server on %s: %w", cfg.AdminAddr, err)
	}
	return s, nil
}

// AdminAddr is the address /healthz and /metrics are served on.
func (s *Service) AdminAddr() string { return s.admin.Addr() }

// ID is the runner id written into pairs.
func (s *Service) ID() string { return s.cfg.ID }

// Stats returns the counters since New.
func (s *Service) Stats() Stats { return s.m.snapshot() }

// Ready is closed once the runner is connected, its streams and consumer
// exist, the launches are loaded, and it has started pulling envelopes.
func (s *Service) Ready() <-chan struct{} { return s.ready }

func (s *Service) checkNATS(context.Context) error {
	nc := s.nc.Load()
	if nc == nil {
		return ErrNotConnected
	}
	if st := nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: connection is %s", ErrNotConnected, st)
	}
	return nil
}

// Run processes envelopes until ctx is cancelled, then stops fetching, lets
// the replays in flight finish (each bounded by RUNNER_TIMEOUT), publishes
// and acks them, and closes everything. It returns nil after a clean
// shutdown; it retries NATS with backoff rather than failing on it.
func (s *Service) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("shadow-runner: Run called twice")
	}
	defer s.shutdownAdmin()
	defer s.transport.CloseIdleConnections()

	nc, err := stream.Connect(s.cfg.NATSURL, "shadow-runner "+s.cfg.ID, s.log)
	if err != nil {
		// With retry-on-failed-connect this only fails on a bad URL or
		// option, which no retry fixes.
		return err
	}
	s.nc.Store(nc)
	defer stream.Close(nc, publishTimeout, s.log)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	s.js = js

	kv, ok := s.setupKV(ctx)
	if !ok {
		return nil
	}
	s.store = launch.NewStore(kv)
	s.watcher = launch.NewWatcher(kv, s.nc.Load(), s.log)
	var wg conc.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.watch(ctx) })

	// Joined before the first fetch, so the first replays already use this
	// runner's share of each max_rps rather than the whole cap.
	if !s.joinFleet(ctx) {
		return nil
	}
	wg.Go(func() { s.fleet.run(ctx, s.pruneLimiters) })

	cons, ok := s.setupConsumer(ctx)
	if !ok {
		return nil
	}
	select {
	case <-s.watcher.Ready():
	case <-ctx.Done():
		return nil
	}
	s.log.Info("shadow-runner started", "concurrency", s.cfg.Concurrency, "timeout", s.cfg.Timeout,
		"max_ack_pending", s.cfg.MaxAckPending, "admin", s.AdminAddr())
	s.readyOnce.Do(func() { close(s.ready) })
	s.consume(ctx, cons)
	s.log.Info("shadow-runner stopped")
	return nil
}

func (s *Service) shutdownAdmin() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.admin.Shutdown(ctx)
}

// backoff spaces the retries of start-up steps and failed fetches.
func backoff() retry.Backoff {
	return retry.Backoff{Min: 100 * time.Millisecond, Max: maxBackoff}
}

// retry runs a start-up step until it succeeds or ctx is done; it reports
// whether it succeeded.
func (s *Service) retry(ctx context.Context, what string, f func(context.Context) error) bool {
	return retry.Until(ctx, s.log, what, backoff(), setupTimeout, f)
}

func (s *Service) setupKV(ctx context.Context) (jetstream.KeyValue, bool) {
	return retry.Get(ctx, s.log, "create streams and launches bucket", backoff(), setupTimeout,
		func(ctx context.Context) (jetstream.KeyValue, error) { return launch.Setup(ctx, s.js) })
}

// joinFleet opens the runners bucket, writes this runner's first heartbeat
// and counts the fleet.
func (s *Service) joinFleet(ctx context.Context) bool {
	return s.retry(ctx, "join the runners bucket "+RunnersBucket, func(ctx context.Context) error {
		if s.fleet == nil {
			kv, err := openRunnersBucket(ctx, s.js, s.cfg.HeartbeatTTL)
			if err != nil {
				return err
			}
			s.fleet = newFleet(kv, s.nc.Load(), &s.cfg, s.m, s.log)
			s.cap = newLoadCap(s.fleet.runners)
		}
		return s.fleet.join(ctx)
	})
}

// pruneLimiters drops the limiters of launches that no longer need one.
func (s *Service) pruneLimiters() {
	byID := s.watcher.Snapshot().ByID
	s.cap.prune(func(id string) bool {
		l, ok := byID[id]
		return ok && l.MaxRPS > 0 && l.Status != launch.StatusRolledBack && l.Status != launch.StatusPromoted
	})
}

func (s *Service) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       stream.RunnerConsumer,
		Description:   "shadow-runner: replays envelopes against shadows (shared by every runner process)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.ackWait(),
		MaxAckPending: s.cfg.MaxAckPending,
		MaxDeliver:    s.cfg.MaxDeliver,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

func (s *Service) setupConsumer(ctx context.Context) (jetstream.Consumer, bool) {
	return retry.Get(ctx, s.log, "create consumer "+stream.RunnerConsumer, backoff(), setupTimeout,
		func(ctx context.Context) (jetstream.Consumer, error) {
			return stream.EnsureConsumer(ctx, s.js, stream.EnvelopesStream, s.consumerConfig())
		})
}

// watch runs the launch watcher; it restarts its KV watch on reconnects and
// failures by itself, keeping the last snapshot in force meanwhile.
func (s *Service) watch(ctx context.Context) {
	_ = s.watcher.Run(ctx) // returns only when ctx is done
}

// consume pulls envelopes until ctx is done. It reserves a concurrency slot
// for every envelope before asking for it, so each fetched envelope starts
// at once (its ack deadline is not spent waiting in a local queue) and at
// most Concurrency envelopes are in flight in this process.
func (s *Service) consume(ctx context.Context, cons jetstream.Consumer) {
	slots := make(chan struct{}, s.cfg.Concurrency)
	p := pool.New().WithMaxGoroutines(s.cfg.Concurrency)
	defer p.Wait()
	// Tasks outlive ctx: a replay that started is finished, published and
	// acked during shutdown.
	taskCtx := context.WithoutCancel(ctx)
	bo := backoff()
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
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				if ctx.Err() != nil {
					// Shutting down: hand it straight to another runner.
					s.nak(msg, 0)
					<-slots
					continue
				}
				p.Go(func() {
					defer func() { <-slots }()
					s.handle(taskCtx, msg)
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
		delay := bo.Next()
		s.log.Warn("fetching envelopes failed", "err", err, "retry_in", delay)
		if !retry.Sleep(ctx, delay) {
			return
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
			errors.Is(err, jetstream.ErrConsumerDeleted) {
			if c, ok := s.setupConsumer(ctx); ok {
				cons = c
			}
		}
	}
}

// handle processes one delivery to completion: it acks, naks or
// dead-letters it, never leaves it to the ack deadline unless NATS is gone.
func (s *Service) handle(ctx context.Context, msg jetstream.Msg) {
	s.m.inFlight.Add(1)
	s.m.pInFlight.Inc()
	defer func() {
		s.m.inFlight.Add(-1)
		s.m.pInFlight.Dec()
	}()
	s.m.received.Add(1)
	s.m.pReceived.Inc()

	env, err := envelope.Decode(msg.Data())
	if err != nil {
		// Decode reports nothing but bad input (ErrMalformed); anything
		// else would be a bug, and retrying a decode cannot fix it either.
		s.deadLetter(ctx, msg, reasonMalformed, err)
		return
	}
	log := s.log.With("envelope_id", env.ID, "launch_id", env.LaunchID)
	l, err := s.lookup(ctx, env.LaunchID)
	if errors.Is(err, launch.ErrNotFound) {
		s.deadLetter(ctx, msg, reasonUnknownLaunch, fmt.Errorf("envelope %s: unknown launch %s: %w", env.ID, env.LaunchID, err))
		return
	}
	if err != nil {
		log.Warn("cannot read launch; retrying envelope", "err", err)
		s.retryLater(ctx, msg, err)
		return
	}
	switch l.Status {
	case launch.StatusRolledBack, launch.StatusPromoted:
		// The launch is over: nothing may reach its shadow any more.
		s.m.skipped.Add(1)
		s.m.pSkipped.WithLabelValues(string(l.Status)).Inc()
		log.Debug("launch is over; envelope skipped", "status", l.Status)
		s.ack(ctx, msg, log)
		return
	}
	if !s.cap.allow(l.ID, l.MaxRPS) {
		// Over the launch's share of max_rps: skipped now rather than
		// replayed late, which would distort the shadow's latency and
		// hold up the queue.
		s.m.skipped.Add(1)
		s.m.rateLimited.Add(1)
		s.m.pSkipped.WithLabelValues(skipRateLimited).Inc()
		log.Debug("over max_rps; envelope skipped", "max_rps", l.MaxRPS, "runners", s.fleet.runners())
		s.ack(ctx, msg, log)
		return
	}

	if env.Request.BodyTruncated {
		// Replayed with the bytes the tap kept; the envelope's own
		// body_truncated flag travels in the pair for the comparator.
		s.m.pTruncatedReq.Inc()
	}
	out, sec := s.replayAll(ctx, l, env, log)
	pair := envelope.Pair{
		V:          envelope.Version,
		Envelope:   *env,
		Shadow:     out,
		Secondary:  sec,
		RunnerID:   s.cfg.ID,
		ReplayedAt: time.Now().UTC(),
	}
	data, err := json.Marshal(&pair)
	if err != nil {
		// Cannot happen for these types; keep the envelope rather than lose it.
		s.retryLater(ctx, msg, fmt.Errorf("encode pair: %w", err))
		return
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	_, err = s.js.Publish(pctx, stream.PairSubject(env.LaunchID), data, jetstream.WithMsgID(env.ID))
	cancel()
	if err != nil {
		s.m.publishFailed.Add(1)
		s.m.pPublishFailed.Inc()
		log.Warn("publishing pair failed; envelope will be retried", "err", err)
		s.retryLater(ctx, msg, fmt.Errorf("publish pair: %w", err))
		return
	}
	s.m.published.Add(1)
	s.m.pPublished.Inc()
	s.ack(ctx, msg, log)
}

// replayAll replays env to the launch's shadow and, when the launch names
// one, to its secondary at the same time: the two answers are compared for
// noise, so they should see the same moment of the world (and the pair
// waits for the slower of the two, not their sum). A secondary failure is
// recorded in its outcome and never affects the shadow's.
func (s *Service) replayAll(ctx context.Context, l *launch.Launch, env *envelope.Envelope, log *slog.Logger) (envelope.Outcome, *envelope.Outcome) {
	var sec *envelope.Outcome
	var wg conc.WaitGroup
	if l.SecondaryURL != "" {
		wg.Go(func() {
			o := s.replay(ctx, l.SecondaryURL, env)
			sec = &o
		})
	}
	out := s.replay(ctx, l.ShadowURL, env)
	wg.Wait()

	s.m.replayed.Add(1)
	s.m.pReplayed.Inc()
	s.m.pLatency.Observe(float64(out.LatencyUS) / 1e6)
	if out.ErrorKind != "" {
		s.m.shadowFailures.add(out.ErrorKind)
		log.Debug("shadow failed", "kind", out.ErrorKind, "err", out.Error)
	}
	if sec != nil {
		s.m.secondaryReplayed.Add(1)
		s.m.pSecondaryReplayed.Inc()
		s.m.pSecondaryLatency.Observe(float64(sec.LatencyUS) / 1e6)
		if sec.ErrorKind != "" {
			s.m.secondaryFailures.add(sec.ErrorKind)
			log.Debug("secondary failed", "kind", sec.ErrorKind, "err", sec.Error)
		}
	}
	return out, sec
}

// lookup finds a launch in the watcher's snapshot, falling back to the
// bucket itself for an id the snapshot lacks: a launch created a moment ago
// may not have reached the watch yet, and dead-lettering its envelopes
// would lose them.
func (s *Service) lookup(ctx context.Context, id string) (*launch.Launch, error) {
	if l, ok := s.watcher.Snapshot().ByID[id]; ok {
		return l, nil
	}
	gctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	return s.store.Get(gctx, id)
}

func (s *Service) ack(ctx context.Context, msg jetstream.Msg, log *slog.Logger) {
	actx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	// DoubleAck waits for the server, so the counters and the stream agree
	// once handle returns; a lost ack means a redelivery, and the repeated
	// pair is dropped by the pairs stream's duplicate window.
	if err := msg.DoubleAck(actx); err != nil {
		s.m.ackFailed.Add(1)
		s.m.pAckFailed.Inc()
		log.Warn("ack not confirmed; envelope may be redelivered", "err", err)
	}
}

// deadLetter moves a delivery to the dead-letter stream and acks it; if the
// dead-letter publish fails, the delivery is retried instead.
func (s *Service) deadLetter(ctx context.Context, msg jetstream.Msg, reason string, cause error) {
	dctx, cancel := context.WithTimeout(ctx, publishTimeout)
	err := stream.DeadLetter(dctx, s.js, Stage, msg.Subject(), msg.Data(), cause)
	cancel()
	if err != nil {
		s.m.publishFailed.Add(1)
		s.m.pPublishFailed.Inc()
		s.log.Warn("dead-letter failed; envelope will be retried", "subject", msg.Subject(), "reason", cause, "err", err)
		s.nak(msg, s.redeliveryDelay(msg))
		return
	}
	s.m.deadLettered.Add(1)
	s.m.pDeadLettered.WithLabelValues(reason).Inc()
	s.log.Info("envelope dead-lettered", "subject", msg.Subject(), "reason", cause)
	s.ack(ctx, msg, s.log)
}

// retryLater hands a delivery back with a growing delay; on its last
// allowed delivery it is dead-lettered instead, since the server would
// otherwise stop redelivering it and leave it stranded in the stream.
func (s *Service) retryLater(ctx context.Context, msg jetstream.Msg, cause error) {
	if md, err := msg.Metadata(); err == nil && md.NumDelivered >= uint64(s.cfg.MaxDeliver) {
		s.deadLetter(ctx, msg, reasonMaxDeliver,
			fmt.Errorf("gave up after %d deliveries: %w", md.NumDelivered, cause))
		return
	}
	s.nak(msg, s.redeliveryDelay(msg))
}

func (s *Service) redeliveryDelay(msg jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 0 {
		n = md.NumDelivered
	}
	d := time.Second << min(n-1, 5)
	return min(d, maxBackoff)
}

func (s *Service) nak(msg jetstream.Msg, delay time.Duration) {
	var err error
	if delay > 0 {
		err = msg.NakWithDelay(delay)
	} else {
		err = msg.Nak()
	}
	s.m.naks.Add(1)
	s.m.pNaks.Inc()
	if err != nil {
		// NATS is unreachable: the ack deadline brings the envelope back.
		s.log.Debug("nak not sent", "err", err)
	}
}
