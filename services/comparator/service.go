// Package comparator is the comparator service: it pulls pairs from the
// durable JetStream consumer shared by every comparator process, compares
// the shadow's response with the primary's (pkg/compare) under the launch's
// compare rules (watched in the launches KV bucket, so a PATCH applies
// without restart), marks as noise the diffs the launch's secondary shows
// too, and writes one row per pair to ClickHouse in batches, with a few
// redacted example pairs per diff class. Pairs come one per message (v1)
// or in pair batches (envelope.BatchHeader); workers compare deliveries
// in parallel while the batch before is inserted (consume.go). A pair is
// acknowledged only after the batch holding it is inserted, so a
// ClickHouse outage or a crash delays rows and loses none; a pair this
// process stored lately is not inserted again when redelivered (an ack
// lost with a reconnect), and a pair stored twice anyway (a crash between
// insert and ack) collapses in the ReplacingMergeTree, read with FINAL.
// Scaling out is running more processes.
package comparator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// Stage is this service's name in dead-letter subjects.
const Stage = "comparator"

const (
	// gcPercent is the GC target without GOGC: the heap is at most two
	// batches (COMPARATOR_BATCH_BYTES each) and what the workers hold.
	gcPercent = 200
	// setupTimeout bounds one start-up attempt (connect, migrate, create).
	setupTimeout = 15 * time.Second
	// minBackoff is the first retry delay.
	minBackoff = 100 * time.Millisecond
	// reasonMalformed labels every dead letter of the comparator: a
	// message that is not a pair it can compare.
	reasonMalformed = "malformed"
)

// ErrNotConnected is reported by the ClickHouse health check before the
// connection exists.
var ErrNotConnected = errors.New("not connected")

// Service is one comparator process: the batching handler its stage runs.
type Service struct {
	cfg Config
	log *slog.Logger
	st  *stage.Stage
	m   *metrics
	cmp compare.Comparer
	// buildRow is BuildRow (a seam for the tests of a handler that panics).
	buildRow func(compare.Comparer, *envelope.Pair) (analytics.Row, error)

	ch analytics.LazyConn

	// shared guards rules and slots, used by every Handle.
	shared sync.Mutex
	rules  *rulesCache
	slots  *exampleSlots
	recent *recentIDs

	// mu guards the batches: b is being built by Handle, inserting is
	// being inserted by the flusher (nil when none), free is a stored one
	// to reuse; cond wakes Handles waiting for room when an insert ends.
	mu            sync.Mutex
	cond          *sync.Cond
	b, inserting  *batch
	free          *batch
	closing       bool
	due           chan struct{}
	flusherDone   chan struct{}
	budget, slack int

	ledger *live.Ledger // loss accounting (accounting.go)
}

// New validates cfg, binds the admin server on cfg.AdminAddr and returns a
// service ready to Run. It does not touch NATS or ClickHouse.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log,
		buildRow: BuildRow, cmp: compare.Comparer{MaxDiffs: cfg.MaxDiffs, MaxDepth: cfg.MaxDepth, MaxBodyBytes: cfg.MaxBodyBytes},
		slots: newExampleSlots(maxTrackedClasses), recent: newRecentIDs(recentStored), b: newBatch(cfg.BatchSize),
		due: make(chan struct{}, 1), flusherDone: make(chan struct{}), ledger: live.NewLedger(live.RoleComparator, processID())}
	s.cond = sync.NewCond(&s.mu)
	st, err := stage.New(stage.Config{
		Name: Stage, NATS: cfg.NATS, Stream: stream.PairsStream, Consumer: s.consumerConfig(),
		AdminAddr: cfg.AdminAddr, MetricPrefix: "darklaunch_comparator_", Unit: "pairs",
		DeadLetterReasons: []string{reasonMalformed}, DrainTimeout: cfg.ShutdownTimeout, Concurrency: cfg.Workers, FetchBatch: cfg.FetchBatch,
		Backoff: s.backoff(), SetupTimeout: setupTimeout, GCPercent: gcPercent, Profiles: cfg.Profiles(), OnDeadLetter: s.countDeadLetter,
	}, s, log)
	if err != nil {
		return nil, err
	}
	s.st = st
	s.m = newMetrics(st.Admin().Registry)
	st.Admin().AddCheck("clickhouse", s.checkClickHouse)
	return s, nil
}

// AdminAddr is the address /healthz and /metrics are served on.
func (s *Service) AdminAddr() string { return s.st.AdminAddr() }

// Stats returns the counters since New.
func (s *Service) Stats() Stats { return s.m.snapshot(s.st.Stats()) }

// Stage is the runtime the comparator runs in.
func (s *Service) Stage() *stage.Stage { return s.st }

// Ready is closed once the comparator is connected to NATS and ClickHouse,
// the schema is applied, the launches are loaded, the consumer exists and
// pairs are being pulled.
func (s *Service) Ready() <-chan struct{} { return s.st.Ready() }

func (s *Service) checkClickHouse(ctx context.Context) error {
	ch := s.ch.Get()
	if ch == nil {
		return fmt.Errorf("ClickHouse: %w", ErrNotConnected)
	}
	return ch.Ping(ctx)
}

// Run compares pairs until ctx is cancelled, then stops fetching, inserts
// the current batch (trying for at most COMPARATOR_SHUTDOWN_TIMEOUT),
// acknowledges it, and closes everything. It returns nil after a clean
// shutdown; NATS and ClickHouse being down is retried, not an error.
func (s *Service) Run(ctx context.Context) error {
	defer func() {
		if ch := s.ch.Get(); ch != nil {
			_ = ch.Close()
		}
	}()
	return s.st.Run(ctx)
}

// Start opens and watches the launches bucket (the compare rules),
// connects to ClickHouse and applies the schema, and waits for the
// launches to load: pairs compared before would each cost a KV read
// instead of a map lookup.
func (s *Service) Start(ctx context.Context) error {
	js := s.st.JetStream()
	kv, ok := stage.Get(ctx, s.st, "create streams and launches bucket",
		func(ctx context.Context) (jetstream.KeyValue, error) { return launch.Setup(ctx, js) })
	if !ok {
		return ctx.Err()
	}
	watcher := launch.NewWatcher(kv, s.st.Conn(), s.log)
	s.rules = newRulesCache(kvSource{w: watcher, s: launch.NewStore(kv)}, s.log)
	// Restarts its KV watch by itself; the last snapshot stays in force
	// meanwhile.
	s.st.Go(func() { _ = watcher.Run(ctx) })
	s.st.Go(func() { s.reportAccounting(ctx) })
	if !s.st.Retry(ctx, "connect to ClickHouse and apply the schema", s.openClickHouse) {
		return ctx.Err()
	}
	select {
	case <-watcher.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	// A message can be as large as the server's max payload; the byte
	// budget always leaves room for one, or the pull would never return it.
	s.slack = msgOverhead + int(s.st.Conn().MaxPayload())
	s.budget = max(s.cfg.BatchBytes, 2*s.slack)
	s.st.Go(func() { s.flushLoop(ctx) })
	return nil
}

func (s *Service) openClickHouse(ctx context.Context) error {
	conn, err := analytics.Connect(ctx, s.cfg.ClickHouse)
	if err != nil {
		return err
	}
	s.ch.Set(conn)
	return nil
}

func (s *Service) consumerConfig() jetstream.ConsumerConfig {
	// Every pair is retried until it is stored (MaxDeliver -1): the only
	// failure that repeats is ClickHouse being unavailable, which must not
	// drop rows.
	return stage.Consumer(stream.ComparatorConsumer,
		"comparator: compares pairs and stores them in ClickHouse (shared by every comparator process)",
		s.cfg.ackWait(), s.cfg.MaxAckPending, -1)
}

// backoff spaces every retry of this service: start-up, fetches, inserts.
func (s *Service) backoff() retry.Backoff {
	return retry.Backoff{Min: minBackoff, Max: s.cfg.RetryMax}
}
