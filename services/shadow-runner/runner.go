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
	"math/rand/v2"
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
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sourcegraph/conc"
)

// Stage is this service's name in dead-letter subjects.
const Stage = "shadow-runner"

const (
	// gcPercent is the GC target without GOGC: a runner's heap is the
	// envelopes it holds, and GC was a fifth of its CPU at the default.
	gcPercent = 400
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
	direct    *directPools

	js jetstream.JetStream
	// pub publishes pairs asynchronously, at most pubWindow awaiting
	// their ack; slots bound the replays in progress in the process.
	pub     jetstream.JetStream
	slots   *replaySlots
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
	s := &Service{cfg: cfg, log: log, keys: keys, slots: newReplaySlots(cfg.Concurrency), ledger: live.NewLedger(live.RoleRunner, cfg.ID)}
	s.client, s.transport = newClient(&s.cfg)
	s.direct = newDirectPools(&s.cfg, s.transport)
	st, err := stage.New(stage.Config{
		Name: Stage, ClientName: "shadow-runner " + cfg.ID, NATS: cfg.NATS,
		Stream: stream.EnvelopesStream, Consumer: s.consumerConfig(), AdminAddr: cfg.AdminAddr,
		MetricPrefix: metricPrefix, Unit: "envelopes", DeadLetterReasons: []string{reasonMalformed, reasonUnknownLaunch, reasonTooLarge, reasonSeal},
		Concurrency: cfg.Concurrency, FetchBatch: cfg.FetchBatch,
		Backoff: retry.Backoff{Min: 100 * time.Millisecond, Max: maxBackoff}, GCPercent: gcPercent, Profiles: cfg.Profiles(),
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
	defer s.direct.closeIdle()
	// The slots stop after the stage, whose drain may still replay.
	defer s.slots.run()()
	return s.st.Run(ctx)
}

// Start opens the launches bucket and watches it, joins the fleet of
// runners (before the first fetch, so the first replays already use this
// runner's share of each max_rps), and waits for the launches to load.
func (s *Service) Start(ctx context.Context) error {
	s.js = s.st.JetStream()
	pub, err := jetstream.New(s.st.Conn(), jetstream.WithPublishAsyncMaxPending(s.cfg.pubWindow()),
		jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	s.pub = pub
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

// Handle processes one delivery to completion: a single v1 envelope, or
// an envelope batch (envelope.BatchHeader). Each envelope is replayed in a
// replay slot (at most RUNNER_CONCURRENCY at once in the process, the
// envelopes of a batch concurrently), and the pairs are published: a
// single envelope's as a single v1 pair (Nats-Msg-Id: the envelope id), a
// batch's as pair batches (Nats-Msg-Id: envelope.BatchID of their envelope
// ids). The delivery is acked once every pair is stored; an envelope that
// cannot be processed is dead-lettered alone with its reason (a single
// envelope's delivery as a whole). A launch that cannot be read, or a
// publish that fails, hands the whole delivery back (Retry) before
// anything is acked. ctx is not cancelled by shutdown: a replay that
// started is finished (bounded by RUNNER_TIMEOUT), published and acked.
func (s *Service) Handle(ctx context.Context, msg *stage.Msg) {
	d := &delivery{msg: msg, batch: msg.Header(envelope.BatchHeader) != ""}
	envs, ok := s.decode(ctx, d)
	if !ok {
		return
	}
	// Launches first: a launch that cannot be read retries the delivery
	// before anything is replayed.
	jobs := make([]job, 0, len(envs))
	for _, env := range envs {
		j, ok, err := s.prepare(ctx, d, env)
		if err != nil {
			return
		}
		if ok {
			jobs = append(jobs, j)
		}
	}
	pairs := s.replayJobs(ctx, jobs)
	if d.batch {
		s.publishBatch(ctx, d, pairs)
	} else if len(pairs) == 1 {
		s.publishSingle(ctx, d, pairs[0])
	}
	if msg.Ack() { // false when the delivery was settled above
		s.account(&d.tally)
	}
}

// delivery is one message being handled: a single envelope or a batch.
type delivery struct {
	msg   *stage.Msg
	batch bool
	tally tally // what its envelopes became, counted once it is acked (accounting.go)
}

// reject dead-letters one envelope of the delivery with its reason: the
// delivery itself when it is a single envelope, the item alone in a batch
// (item gives its bytes). It reports whether the delivery goes on; when
// it does not, the delivery is settled.
func (s *Service) reject(ctx context.Context, d *delivery, reason string, item func() ([]byte, error), cause error) bool {
	if !d.batch {
		d.msg.DeadLetter(ctx, reason, cause)
		return false
	}
	data, err := item()
	if err == nil {
		err = d.msg.DeadLetterItem(ctx, reason, data, cause)
	}
	if err == nil {
		d.tally.add(launchOf(d.msg.Subject(), stream.EnvelopesPrefix), countDeadLettered, reason, 1)
	}
	if err != nil {
		d.msg.Retry(ctx, fmt.Errorf("dead-letter a batch item: %w", err))
		return false
	}
	return true
}

// decode reads the delivery's envelopes; bad items of a batch are
// dead-lettered alone. false: the delivery is settled.
func (s *Service) decode(ctx context.Context, d *delivery) ([]*envelope.Envelope, bool) {
	data := d.msg.Data()
	if !d.batch {
		env, err := envelope.Decode(data)
		if err != nil {
			// Decode reports nothing but bad input (ErrMalformed): no
			// retry can fix it.
			d.msg.DeadLetter(ctx, reasonMalformed, err)
			return nil, false
		}
		return []*envelope.Envelope{env}, true
	}
	envs, bad, err := envelope.DecodeEnvelopeBatch(data)
	if err != nil {
		d.msg.DeadLetter(ctx, reasonMalformed, err)
		return nil, false
	}
	for _, ie := range bad {
		if !s.reject(ctx, d, reasonMalformed, func() ([]byte, error) { return envelope.BatchItem(data, ie.Index) }, ie) {
			return nil, false
		}
	}
	return envs, true
}

// job is one envelope to replay: its launch, and the envelope as sent
// (with sealed header values opened).
type job struct {
	env, replayEnv *envelope.Envelope
	l              *launch.Launch
}

// envLog is the logger of one envelope's messages (built only when one is
// written: slog's With costs an allocation per attribute).
func (s *Service) envLog(env *envelope.Envelope) *slog.Logger {
	return s.log.With("envelope_id", env.ID, "launch_id", env.LaunchID)
}

// errSettled: the delivery was settled while preparing an envelope.
var errSettled = errors.New("delivery settled")

// prepare decides what becomes of one envelope: replayed (a job), skipped
// (its launch is over, or over max_rps), or dead-lettered alone. An error
// means the delivery was settled (handed back, or dead-lettered whole).
func (s *Service) prepare(ctx context.Context, d *delivery, env *envelope.Envelope) (job, bool, error) {
	item := func() ([]byte, error) { return envelope.AppendEnvelopeBatch(nil, []*envelope.Envelope{env}) }
	l, err := s.lookup(ctx, env.LaunchID)
	if errors.Is(err, launch.ErrNotFound) {
		if s.reject(ctx, d, reasonUnknownLaunch, item, fmt.Errorf("envelope %s: unknown launch %s: %w", env.ID, env.LaunchID, err)) {
			return job{}, false, nil
		}
		return job{}, false, errSettled
	}
	if err != nil {
		s.envLog(env).Warn("cannot read launch; retrying the delivery", "err", err)
		d.msg.Retry(ctx, err)
		return job{}, false, errSettled
	}
	switch l.Status {
	case launch.StatusRolledBack, launch.StatusPromoted:
		// The launch is over: nothing may reach its shadow any more.
		if l.Status == launch.StatusRolledBack {
			s.m.skippedRolledBack.Inc()
			d.tally.add(l.ID, countSkipped, skipRolledBack, 1)
		} else {
			s.m.skippedPromoted.Inc()
			d.tally.add(l.ID, countSkipped, skipPromoted, 1)
		}
		s.envLog(env).Debug("launch is over; envelope skipped", "status", l.Status)
		return job{}, false, nil
	}
	if !s.cap.allow(l.ID, l.MaxRPS) {
		// Over the launch's share of max_rps: skipped now rather than
		// replayed late, which would distort the shadow's latency and
		// hold up the queue.
		s.m.rateLimited.Inc()
		d.tally.add(l.ID, countSkipped, skipRateLimited, 1)
		s.envLog(env).Debug("over max_rps; envelope skipped", "max_rps", l.MaxRPS, "runners", s.fleet.runners())
		return job{}, false, nil
	}
	if env.Request.BodyTruncated {
		// Replayed with the bytes the tap kept; the envelope's own
		// body_truncated flag travels in the pair for the comparator.
		s.m.truncatedReq.Inc()
	}
	replayEnv, err := s.unseal(env)
	if err != nil {
		if s.reject(ctx, d, reasonSeal, item, err) {
			return job{}, false, nil
		}
		return job{}, false, errSettled
	}
	return job{env: env, replayEnv: replayEnv, l: l}, true, nil
}

// replayJobs replays the jobs, each in a replay slot taken in order (so
// the deliveries of the process are served about first come, first
// served), and returns their pairs in order. A panic in a replay reaches
// the caller (the stage dead-letters the delivery).
func (s *Service) replayJobs(ctx context.Context, jobs []job) []*envelope.Pair {
	pairs := make([]*envelope.Pair, len(jobs))
	s.slots.each(len(jobs), func(i int) { pairs[i] = s.replayPair(ctx, &jobs[i]) })
	return pairs
}

func (s *Service) replayPair(ctx context.Context, j *job) *envelope.Pair {
	out, sec := s.replayAll(ctx, j.l, j.replayEnv)
	maskEchoes(j.env, j.replayEnv, &out, sec)
	s.sealOutcomes(j.env.LaunchID, &out, sec)
	return &envelope.Pair{
		V:          envelope.Version,
		Envelope:   *j.env,
		Shadow:     out,
		Secondary:  sec,
		RunnerID:   s.cfg.ID,
		ReplayedAt: time.Now().UTC(),
	}
}

// pairHeadroom is kept free of a pair's JSON within the max payload for
// the message's headers (Nats-Msg-Id), which count towards it.
const pairHeadroom = 512

// encodePair encodes a pair as a single v1 message so that it fits in a
// NATS message, cutting the bodies it carries when it would not (each cut
// body flagged body_truncated, its body_size kept; counted in
// pairs_truncated_total), like a tap fits its envelopes. ErrTooLarge: not
// even without bodies.
func (s *Service) encodePair(p *envelope.Pair) ([]byte, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	fitted, err := envelope.FitPair(p, data, s.payloadLimit())
	if err == nil && len(fitted) < len(data) {
		s.m.truncatedPairs.Inc()
	}
	return fitted, err
}

// payloadLimit is the most bytes a pair message's data may take.
func (s *Service) payloadLimit() int { return int(s.st.Conn().MaxPayload()) - pairHeadroom }

// replayAll replays env to the launch's shadow and, when the launch names
// one, to its secondary at the same time: the two answers are compared for
// noise, so they should see the same moment of the world (and the pair
// waits for the slower of the two, not their sum). A secondary failure is
// recorded in its outcome and never affects the shadow's.
//
// The verdict compares the two latencies (the secondary is the shadow's
// fair control), so neither may be favoured by the order they start in:
// the one replayed on this goroutine is sent first and its time can
// include the other's setup when the CPU is short. A coin flip per
// envelope picks which one that is, so such an effect is noise the
// paired test sees as such, not a bias against the shadow.
func (s *Service) replayAll(ctx context.Context, l *launch.Launch, env *envelope.Envelope) (envelope.Outcome, *envelope.Outcome) {
	var out envelope.Outcome
	var sec *envelope.Outcome
	if l.SecondaryURL != "" {
		var o envelope.Outcome
		first, second := &out, &o
		firstURL, secondURL := l.ShadowURL, l.SecondaryURL
		if rand.N(2) == 0 {
			first, second, firstURL, secondURL = second, first, secondURL, firstURL
		}
		var wg conc.WaitGroup
		wg.Go(func() { *second = s.replay(ctx, secondURL, env) })
		*first = s.replay(ctx, firstURL, env)
		wg.Wait()
		sec = &o
	} else {
		out = s.replay(ctx, l.ShadowURL, env)
	}

	s.m.replayed.Inc()
	s.m.latency.Observe(float64(out.LatencyUS) / 1e6)
	if out.ErrorKind != "" {
		failed(s.m.shadowFailure, out.ErrorKind)
		s.envLog(env).Debug("shadow failed", "kind", out.ErrorKind, "err", out.Error)
	}
	if sec != nil {
		s.m.secondaryReplayed.Inc()
		s.m.secondaryLatency.Observe(float64(sec.LatencyUS) / 1e6)
		if sec.ErrorKind != "" {
			failed(s.m.secondaryFailure, sec.ErrorKind)
			s.envLog(env).Debug("secondary failed", "kind", sec.ErrorKind, "err", sec.Error)
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
