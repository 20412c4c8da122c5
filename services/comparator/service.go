// Package comparator is the comparator service: it pulls pairs from the
// durable JetStream consumer shared by every comparator process, compares
// the shadow's response with the primary's (pkg/compare) under the launch's
// compare rules (watched in the launches KV bucket, so a PATCH applies
// without restart), marks as noise the diffs the launch's secondary shows
// too, and writes one row per pair to ClickHouse in batches, with a few
// redacted example pairs per diff class. A pair is acknowledged only after
// the batch holding it is inserted, so a ClickHouse outage or a crash delays
// rows and loses none; a pair stored twice (a crash between insert and ack)
// collapses in the ReplacingMergeTree, read with FINAL. Scaling out is
// running more processes.
package comparator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sourcegraph/conc"
)

// Stage is this service's name in dead-letter subjects.
const Stage = "comparator"

const (
	// setupTimeout bounds one start-up attempt (connect, migrate, create).
	setupTimeout = 15 * time.Second
	// publishTimeout bounds a dead-letter publish and its ack.
	publishTimeout = 5 * time.Second
	// minBackoff is the first retry delay.
	minBackoff = 100 * time.Millisecond
)

var (
	// ErrNotConnected is reported by the health checks before the
	// connections exist or while NATS is disconnected.
	ErrNotConnected = errors.New("not connected")
	errRunTwice     = errors.New("comparator: Run called twice")
)

// Service is one comparator process.
type Service struct {
	cfg   Config
	log   *slog.Logger
	admin *admin.Server
	m     *metrics
	cmp   compare.Comparer

	nc atomic.Pointer[nats.Conn]
	ch atomic.Pointer[chConn]
	js jetstream.JetStream

	// rules and slots belong to the consume loop.
	rules *rulesCache
	slots *exampleSlots

	ready     chan struct{}
	readyOnce sync.Once
	ran       atomic.Bool
}

// chConn boxes the ClickHouse connection (an interface) for atomic.Pointer.
type chConn struct{ driver.Conn }

// New validates cfg, starts the admin server on cfg.AdminAddr and returns a
// service ready to Run. It does not touch NATS or ClickHouse.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log, ready: make(chan struct{}),
		cmp:   compare.Comparer{MaxDiffs: cfg.MaxDiffs, MaxDepth: cfg.MaxDepth, MaxBodyBytes: cfg.MaxBodyBytes},
		slots: newExampleSlots(maxTrackedClasses)}
	s.admin = admin.New(log)
	s.m = newMetrics(s.admin.Registry)
	s.admin.AddCheck("nats", s.checkNATS)
	s.admin.AddCheck("clickhouse", s.checkClickHouse)
	if err := s.admin.Start(cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("admin server on %s: %w", cfg.AdminAddr, err)
	}
	return s, nil
}

// AdminAddr is the address /healthz and /metrics are served on.
func (s *Service) AdminAddr() string { return s.admin.Addr() }

// Stats returns the counters since New.
func (s *Service) Stats() Stats { return s.m.snapshot() }

// Ready is closed once the comparator is connected to NATS and ClickHouse,
// the schema is applied, the launches are loaded, the consumer exists and
// pairs are being pulled.
func (s *Service) Ready() <-chan struct{} { return s.ready }

func (s *Service) checkNATS(context.Context) error {
	nc := s.nc.Load()
	if nc == nil {
		return fmt.Errorf("NATS: %w", ErrNotConnected)
	}
	if st := nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS: %w: connection is %s", ErrNotConnected, st)
	}
	return nil
}

func (s *Service) checkClickHouse(ctx context.Context) error {
	ch := s.ch.Load()
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
	if !s.ran.CompareAndSwap(false, true) {
		return errRunTwice
	}
	defer s.shutdownAdmin()

	nc, err := stream.Connect(s.cfg.NATSURL, "comparator", s.log)
	if err != nil {
		// With retry-on-failed-connect this only fails on a bad URL or
		// option, which no retry fixes.
		return err
	}
	s.nc.Store(nc)
	defer stream.Close(nc, publishTimeout, s.log)
	if s.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	kv, ok := retry.Get(ctx, s.log, "create streams and launches bucket", s.backoff(), setupTimeout,
		func(ctx context.Context) (jetstream.KeyValue, error) { return launch.Setup(ctx, s.js) })
	if !ok {
		return nil
	}
	watcher := launch.NewWatcher(kv, nc, s.log)
	s.rules = newRulesCache(kvSource{w: watcher, s: launch.NewStore(kv)}, s.log)
	var wg conc.WaitGroup
	defer wg.Wait() // before the NATS connection closes
	wg.Go(func() {
		// Restarts its KV watch by itself; the last snapshot stays in
		// force meanwhile.
		_ = watcher.Run(ctx)
	})
	if !s.retry(ctx, "connect to ClickHouse and apply the schema", s.openClickHouse) {
		return nil
	}
	defer func() {
		if ch := s.ch.Load(); ch != nil {
			_ = ch.Close()
		}
	}()
	cons, ok := s.setupConsumer(ctx)
	if !ok {
		return nil
	}
	// Pairs compared before the launches are loaded would each cost a KV
	// read instead of a map lookup.
	select {
	case <-watcher.Ready():
	case <-ctx.Done():
		return nil
	}
	s.log.Info("comparator started", "batch_size", s.cfg.BatchSize, "flush_interval", s.cfg.FlushInterval,
		"max_ack_pending", s.cfg.MaxAckPending, "ack_wait", s.cfg.ackWait(), "admin", s.AdminAddr())
	s.readyOnce.Do(func() { close(s.ready) })
	s.consume(ctx, cons)
	s.log.Info("comparator stopped", "stats", s.Stats())
	return nil
}

func (s *Service) openClickHouse(ctx context.Context) error {
	conn, err := analytics.Open(ctx, analytics.Options{Addr: s.cfg.ClickHouseAddr, Database: s.cfg.ClickHouseDatabase,
		User: s.cfg.ClickHouseUser, Password: s.cfg.ClickHousePassword})
	if err != nil {
		return err
	}
	if err := analytics.Migrate(ctx, conn, s.cfg.ClickHouseDatabase); err != nil {
		_ = conn.Close()
		return err
	}
	s.ch.Store(&chConn{conn})
	return nil
}

func (s *Service) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       stream.ComparatorConsumer,
		Description:   "comparator: compares pairs and stores them in ClickHouse (shared by every comparator process)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.ackWait(),
		MaxAckPending: s.cfg.MaxAckPending,
		// Every pair is retried until it is stored: the only failure that
		// repeats is ClickHouse being unavailable, which must not drop rows.
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

func (s *Service) setupConsumer(ctx context.Context) (jetstream.Consumer, bool) {
	return retry.Get(ctx, s.log, "create consumer "+stream.ComparatorConsumer, s.backoff(), setupTimeout,
		func(ctx context.Context) (jetstream.Consumer, error) {
			return stream.EnsureConsumer(ctx, s.js, stream.PairsStream, s.consumerConfig())
		})
}

func (s *Service) shutdownAdmin() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.admin.Shutdown(ctx)
}

// backoff spaces every retry of this service: start-up, fetches, inserts.
func (s *Service) backoff() retry.Backoff {
	return retry.Backoff{Min: minBackoff, Max: s.cfg.RetryMax}
}

// retry runs a start-up step until it succeeds or ctx is done; it reports
// whether it succeeded.
func (s *Service) retry(ctx context.Context, what string, f func(context.Context) error) bool {
	return retry.Until(ctx, s.log, what, s.backoff(), setupTimeout, f)
}
