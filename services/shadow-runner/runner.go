// Package runner is the shadow-runner service: it pulls envelopes from the
// durable JetStream consumer shared by every runner process, replays each
// request against its launch's shadow URL (and, concurrently, against its
// secondary URL when the launch names one, for noise cancellation), and
// publishes the envelope with the outcomes as a pair. An envelope is acked
// only after its pair is stored, so a crash or a NATS outage loses nothing
// (a replay may then be repeated; the pair is deduplicated by envelope id).
// Scaling out is running more processes.
//
// The runner is a handler of the stage runtime (pkg/stage): the runtime
// connects, pulls, counts and drains; Handle replays one envelope and
// settles it.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/seal"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sourcegraph/conc"
)

// Stage is this service's name in dead-letter subjects.
const Stage = "shadow-runner"

const (
	// publishTimeout bounds one pair publish and one KV read.
	publishTimeout = 5 * time.Second
	// maxBackoff caps retry delays (setup, fetch errors, redeliveries).
	maxBackoff = 30 * time.Second
)

// Service is one shadow-runner process: the handler its stage runs.
type Service struct {
	cfg       Config
	log       *slog.Logger
	st        *stage.Stage
	admin     *admin.Server
	m         *metrics
	client    *http.Client
	transport *http.Transport

	js      jetstream.JetStream
	watcher *launch.Watcher
	store   *launch.Store
	fleet   *fleet
	cap     *loadCap
	keys    *seal.Keys   // nil without RUNNER_SEAL_KEY_FILE (seal.go)
	ledger  *live.Ledger // loss accounting (accounting.go)
}

// New validates cfg, binds the admin server on cfg.AdminAddr and returns a
// service ready to Run. It does not touch NATS.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("runner_id", cfg.ID)
	keys, err := cfg.loadKeys()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, keys: keys, ledger: live.NewLedger(live.RoleRunner, cfg.ID)}
	s.client, s.transport = newClient(&s.cfg)
	st, err := stage.New(stage.Config{
		Name: Stage, ClientName: "shadow-runner " + cfg.ID, NATS: cfg.NATS,
		Stream: stream.EnvelopesStream, Consumer: s.consumerConfig(), AdminAddr: cfg.AdminAddr,
		MetricPrefix: metricPrefix, Unit: "envelopes", DeadLetterReasons: []string{reasonMalformed, reasonUnknownLaunch, reasonTooLarge, reasonSeal},
		Concurrency: cfg.Concurrency, FetchBatch: cfg.FetchBatch,
		Backoff:      retry.Backoff{Min: 100 * time.Millisecond, Max: maxBackoff},
		OnDeadLetter: s.countDeadLetter,
	}, s, log)
	if err != nil {
		return nil, err
	}
	s.st, s.admin = st, st.Admin()
	s.m = newMetrics(s.admin.Registry)
	return s, nil
}

// AdminAddr is the address /healthz and /metrics are served on.
func (s *Service) AdminAddr() string { return s.st.AdminAddr() }

// ID is the runner id written into pairs.
func (s *Service) ID() string { return s.cfg.ID }

// Stats returns the counters since New.
func (s *Service) Stats() Stats { return s.m.snapshot(s.st.Stats()) }

// Stage is the runtime the runner runs in.
func (s *Service) Stage() *stage.Stage { return s.st }

// Ready is closed once the runner is connected, the launches are loaded,
// it has joined the fleet, its consumer exists, and it is pulling envelopes.
func (s *Service) Ready() <-chan struct{} { return s.st.Ready() }

// Run processes envelopes until ctx is cancelled, then stops fetching, lets
// the replays in flight finish (each bounded by RUNNER_TIMEOUT), publishes
// and acks them, and closes everything. It returns nil after a clean
// shutdown; it retries NATS with backoff rather than failing on it.
func (s *Service) Run(ctx context.Context) error {
	defer s.transport.CloseIdleConnections()
	return s.st.Run(ctx)
}

// Start opens the launches bucket and watches it, joins the fleet of
// runners (before the first fetch, so the first replays already use this
// runner's share of each max_rps), and waits for the launches to load.
func (s *Service) Start(ctx context.Context) error {
	s.js = s.st.JetStream()
	kv, ok := stage.Get(ctx, s.st, "create streams and launches bucket",
		func(ctx context.Context) (jetstream.KeyValue, error) { return launch.Setup(ctx, s.js) })
	if !ok {
		return ctx.Err()
	}
	s.store = launch.NewStore(kv)
	s.watcher = launch.NewWatcher(kv, s.st.Conn(), s.log)
	// The watcher restarts its KV watch on reconnects and failures by
	// itself, keeping the last snapshot in force meanwhile.
	s.st.Go(func() { _ = s.watcher.Run(ctx) })
	if !s.joinFleet(ctx) {
		return ctx.Err()
	}
	s.st.Go(func() { s.fleet.run(ctx, s.pruneLimiters) })
	s.st.Go(func() { s.reportAccounting(ctx) })
	select {
	case <-s.watcher.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// joinFleet opens the runners bucket, writes this runner's first heartbeat
// and counts the fleet.
func (s *Service) joinFleet(ctx context.Context) bool {
	return s.st.Retry(ctx, "join the runners bucket "+RunnersBucket, func(ctx context.Context) error {
		if s.fleet == nil {
			kv, err := openRunnersBucket(ctx, s.js, s.cfg.HeartbeatTTL)
			if err != nil {
				return err
			}
			s.fleet = newFleet(kv, s.st.Conn(), &s.cfg, s.m, s.log)
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
	return stage.Consumer(stream.RunnerConsumer,
		"shadow-runner: replays envelopes against shadows (shared by every runner process)",
		s.cfg.ackWait(), s.cfg.MaxAckPending, s.cfg.MaxDeliver)
}

// Handle processes one delivery to completion: it acks, retries or
// dead-letters it, never leaves it to the ack deadline unless NATS is
// gone. ctx is not cancelled by shutdown: a replay that started is
// finished (bounded by RUNNER_TIMEOUT), published and acked.
func (s *Service) Handle(ctx context.Context, msg *stage.Msg) {
	env, err := envelope.Decode(msg.Data())
	if err != nil {
		// Decode reports nothing but bad input (ErrMalformed); anything
		// else would be a bug, and retrying a decode cannot fix it either.
		msg.DeadLetter(ctx, reasonMalformed, err)
		return
	}
	log := s.log.With("envelope_id", env.ID, "launch_id", env.LaunchID)
	l, err := s.lookup(ctx, env.LaunchID)
	if errors.Is(err, launch.ErrNotFound) {
		msg.DeadLetter(ctx, reasonUnknownLaunch, fmt.Errorf("envelope %s: unknown launch %s: %w", env.ID, env.LaunchID, err))
		return
	}
	if err != nil {
		log.Warn("cannot read launch; retrying envelope", "err", err)
		msg.Retry(ctx, err)
		return
	}
	switch l.Status {
	case launch.StatusRolledBack, launch.StatusPromoted:
		// The launch is over: nothing may reach its shadow any more.
		reason := skipPromoted
		if l.Status == launch.StatusRolledBack {
			s.m.skippedRolledBack.Inc()
			reason = skipRolledBack
		} else {
			s.m.skippedPromoted.Inc()
		}
		log.Debug("launch is over; envelope skipped", "status", l.Status)
		s.ackSkipped(ctx, msg, l.ID, reason)
		return
	}
	if !s.cap.allow(l.ID, l.MaxRPS) {
		// Over the launch's share of max_rps: skipped now rather than
		// replayed late, which would distort the shadow's latency and
		// hold up the queue.
		s.m.rateLimited.Inc()
		log.Debug("over max_rps; envelope skipped", "max_rps", l.MaxRPS, "runners", s.fleet.runners())
		s.ackSkipped(ctx, msg, l.ID, skipRateLimited)
		return
	}

	if env.Request.BodyTruncated {
		// Replayed with the bytes the tap kept; the envelope's own
		// body_truncated flag travels in the pair for the comparator.
		s.m.truncatedReq.Inc()
	}
	replayEnv, err := s.unseal(env)
	if err != nil {
		msg.DeadLetter(ctx, reasonSeal, err)
		return
	}
	out, sec := s.replayAll(ctx, l, replayEnv, log)
	maskEchoes(env, replayEnv, &out, sec)
	s.sealOutcomes(env.LaunchID, &out, sec)
	pair := envelope.Pair{
		V:          envelope.Version,
		Envelope:   *env,
		Shadow:     out,
		Secondary:  sec,
		RunnerID:   s.cfg.ID,
		ReplayedAt: time.Now().UTC(),
	}
	data, err := s.encodePair(&pair)
	if errors.Is(err, envelope.ErrTooLarge) {
		msg.DeadLetter(ctx, reasonTooLarge, fmt.Errorf("envelope %s: %w", env.ID, err))
		return
	}
	if err != nil {
		// Cannot happen for these types; keep the envelope rather than lose it.
		msg.Retry(ctx, fmt.Errorf("encode pair: %w", err))
		return
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	_, err = s.js.Publish(pctx, stream.PairSubject(env.LaunchID), data, jetstream.WithMsgID(env.ID))
	cancel()
	if errors.Is(err, nats.ErrMaxPayload) {
		// The server's limit is below what the connection announced:
		// republishing the same bytes cannot succeed.
		msg.DeadLetter(ctx, reasonTooLarge, fmt.Errorf("envelope %s: publish pair: %w", env.ID, err))
		return
	}
	if err != nil {
		s.m.publishFailed.Inc()
		log.Warn("publishing pair failed; envelope will be retried", "err", err)
		msg.Retry(ctx, fmt.Errorf("publish pair: %w", err))
		return
	}
	s.m.published.Inc()
	// Ack waits for the server, so the counters and the stream agree once
	// Handle returns; a lost ack means a redelivery, and the repeated pair
	// is dropped by the pairs stream's duplicate window.
	s.ackReplayed(ctx, msg, env.LaunchID)
}

// pairHeadroom is kept free of a pair's JSON within the max payload for
// the message's headers (Nats-Msg-Id), which count towards it.
const pairHeadroom = 512

// encodePair encodes a pair so that it fits in a NATS message, cutting
// the bodies it carries when it would not (each cut body flagged
// body_truncated, its body_size kept; counted in pairs_truncated_total),
// like a tap fits its envelopes. ErrTooLarge: not even without bodies.
func (s *Service) encodePair(p *envelope.Pair) ([]byte, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	limit := int(s.st.Conn().MaxPayload()) - pairHeadroom
	fitted, err := envelope.FitPair(p, data, limit)
	if err == nil && len(fitted) < len(data) {
		s.m.truncatedPairs.Inc()
	}
	return fitted, err
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

	s.m.replayed.Inc()
	s.m.latency.Observe(float64(out.LatencyUS) / 1e6)
	if out.ErrorKind != "" {
		failed(s.m.shadowFailure, out.ErrorKind)
		log.Debug("shadow failed", "kind", out.ErrorKind, "err", out.Error)
	}
	if sec != nil {
		s.m.secondaryReplayed.Inc()
		s.m.secondaryLatency.Observe(float64(sec.LatencyUS) / 1e6)
		if sec.ErrorKind != "" {
			failed(s.m.secondaryFailure, sec.ErrorKind)
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
