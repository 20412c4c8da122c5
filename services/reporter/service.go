package reporter

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// errNotReady is returned while a dependency has not been connected yet;
// the API answers 503 so pollers retry.
var errNotReady = errors.New("not ready")

// Service is the reporter: the API and dashboard on Addr, metrics and
// health on AdminAddr.
type Service struct {
	cfg     Config
	log     *slog.Logger
	ln      net.Listener
	admin   *admin.Server
	handler http.Handler
	metrics *metrics
	auth    *authenticator
	rdb     redis.UniversalClient
	flight  singleflight.Group

	// Set by Run once each dependency is reachable; read by every request.
	nc     atomic.Pointer[nats.Conn]
	store  atomic.Pointer[launch.Store]
	leases atomic.Pointer[kvLeases]
	liveKV atomic.Pointer[jetstream.KeyValue]
	ch     analytics.LazyConn
	// watcher keeps every launch in memory (the report and verdict
	// handlers read it instead of the store).
	watcher atomic.Pointer[launch.Watcher]

	// memo holds the computed reports and verdict windows this process
	// serves (cache.go); launchJSON the encoded launches.
	memo       memo
	launchJSON launchJSONCache

	// id names this reporter in leases and audit entries.
	id string
	// auditCh queues audit entries for writeAudit; closed at shutdown.
	auditCh     chan api.AuditEntry
	auditMu     sync.Mutex
	auditClosed bool

	// life ends in-flight report computations at shutdown; they run on
	// singleflight's goroutines, which Run waits for through flights.
	life    context.Context
	stop    context.CancelFunc
	mu      sync.Mutex
	closing bool
	flights sync.WaitGroup

	cacheLoggedAt atomic.Int64 // unix nanoseconds of the last logged cache failure
}

// New binds the API and admin listeners and prepares the service; it does
// not contact NATS, ClickHouse or Redis (Run does, retrying).
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.prepare(); err != nil {
		return nil, err
	}
	rdb, err := newRedis(cfg)
	if err != nil {
		return nil, err
	}

	auth, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, admin: admin.New(log), auth: auth, id: cfg.ID, auditCh: make(chan api.AuditEntry, auditQueueSize)}
	if auth.off {
		const warning = "authentication is off (REPORTER_AUTH=off): anyone who reaches REPORTER_ADDR controls the launches"
		log.Warn(warning)
		s.admin.AddWarning(warning)
	} else {
		log.Info("API authentication on", "tokens_file", cfg.TokensFile, "tokens", len(auth.tokens))
	}
	s.metrics = newMetrics(s.admin.Registry)
	s.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on REPORTER_ADDR %s: %w", cfg.Addr, err)
	}
	if cfg.Profiles() {
		s.admin.HandleProfiles()
	}
	if err = s.admin.Listen(cfg.AdminAddr); err != nil {
		s.ln.Close()
		return nil, fmt.Errorf("listen on REPORTER_ADMIN_ADDR %s: %w", cfg.AdminAddr, err)
	}
	s.rdb = rdb
	s.life, s.stop = context.WithCancel(context.Background())
	for name, check := range s.checks() {
		s.admin.AddCheck(name, check)
	}
	// Redis is a cache: reports are served from memory and ClickHouse
	// without it, so its outage must not take the reporters out of their
	// Service (/readyz), though /healthz still says so.
	s.admin.AddOptionalCheck("redis", func(ctx context.Context) error { return s.rdb.Ping(ctx).Err() })
	s.handler = s.routes()
	return s, nil
}

// Addr is the API address (the real one when REPORTER_ADDR had port 0).
func (s *Service) Addr() string { return s.ln.Addr().String() }

// AdminAddr is the metrics and health address.
func (s *Service) AdminAddr() string { return s.admin.Addr() }

// Handler is the API and dashboard handler served on Addr.
func (s *Service) Handler() http.Handler { return s.handler }

// ReportQueries is how many report computations went to ClickHouse since
// New (cache hits and collapsed concurrent polls do not count); the same
// number is the metric darklaunch_reporter_report_queries_total.
func (s *Service) ReportQueries() uint64 { return admin.Uint(s.metrics.reportQueries) }

// Run serves until ctx is cancelled, connecting to NATS and ClickHouse in
// the background with backoff, then shuts down gracefully: in-flight
// requests finish, connections close. It returns nil after a clean stop, or
// the error that stopped a listener.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	api := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	var wg sync.WaitGroup
	serve := func(name string, srv *http.Server, ln net.Listener) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("%s server: %w", name, err))
		}
	}
	wg.Go(func() { serve("api", api, s.ln) })
	// The admin server answers until the shutdown is over.
	actx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	var adminWG sync.WaitGroup
	adminWG.Go(func() {
		if err := s.admin.Serve(actx); err != nil {
			cancel(err)
		}
	})
	defer adminWG.Wait()
	defer stopAdmin()
	wg.Go(func() { s.connectNATS(ctx) })
	wg.Go(func() { s.connectClickHouse(ctx) })
	if s.cfg.ControlInterval > 0 {
		wg.Go(func() { s.runController(ctx) })
	}
	if s.cfg.CompactInterval > 0 {
		wg.Go(func() { s.runCompaction(ctx) })
	}
	var auditWG sync.WaitGroup
	auditWG.Go(s.writeAudit)
	s.log.Info("reporter listening", "addr", s.Addr(), "admin_addr", s.AdminAddr(), "id", s.id)

	<-ctx.Done()
	s.log.Info("reporter shutting down")
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer scancel()
	if err := api.Shutdown(sctx); err != nil {
		s.log.Warn("api server shutdown", "err", err)
	}
	wg.Wait()
	// Nothing records changes any more: write what is queued.
	s.closeAudit()
	auditWG.Wait()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.stop()
	s.flights.Wait()

	if nc := s.nc.Load(); nc != nil {
		nc.Close()
	}
	if ch := s.ch.Get(); ch != nil {
		if err := ch.Close(); err != nil {
			s.log.Warn("close clickhouse", "err", err)
		}
	}
	if err := s.rdb.Close(); err != nil {
		s.log.Warn("close redis", "err", err)
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// retry calls f until it succeeds or ctx ends, backing off from 100 ms to
// 5 s between attempts and logging each failure.
func (s *Service) retry(ctx context.Context, what string, f func(context.Context) error) bool {
	return retry.Until(ctx, s.log, what, retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}, 10*time.Second, f)
}

func (s *Service) connectNATS(ctx context.Context) {
	var nc *nats.Conn
	ok := s.retry(ctx, "connect to NATS", func(context.Context) error {
		var err error
		nc, err = stream.Connect(s.cfg.NATS, "darklaunch-reporter", s.log)
		return err
	})
	if !ok {
		return
	}
	s.nc.Store(nc)
	var kv jetstream.KeyValue
	ok = s.retry(ctx, "open the NATS launches bucket", func(actx context.Context) error {
		js, err := stream.JetStream(nc, s.cfg.NATS)
		if err != nil {
			return err
		}
		kv, err = launch.OpenBucket(actx, js)
		if err != nil {
			return err
		}
		lkv, err := live.OpenBucket(actx, js)
		if err != nil {
			return err
		}
		s.liveKV.Store(&lkv)
		leases, err := OpenLeases(actx, js, s.cfg.LeaseTTL)
		if err != nil {
			return err
		}
		l := newKVLeases(leases, s.id)
		l.errors = s.metrics.leaseErrors.Inc
		s.leases.Store(l)
		s.store.Store(launch.NewStore(kv))
		return nil
	})
	if !ok {
		return
	}
	s.log.Info("launch store ready", "nats_url", nc.ConnectedUrlRedacted())
	w := launch.NewWatcher(kv, nc, s.log)
	s.watcher.Store(w)
	_ = w.Run(ctx) // until shutdown
}

func (s *Service) connectClickHouse(ctx context.Context) {
	var conn driver.Conn
	// Migrating here lets reports answer (with zeros) before the
	// comparator ever created the table.
	ok := s.retry(ctx, "connect to ClickHouse and apply the schema", func(actx context.Context) error {
		c, err := analytics.Connect(actx, s.cfg.ClickHouse)
		conn = c
		return err
	})
	if ok {
		s.ch.Set(conn)
		s.log.Info("clickhouse ready", "addr", s.cfg.ClickHouseAddr, "database", s.cfg.ClickHouseDatabase)
	}
}

// runController drives ramped launches once the launch store, the lease
// bucket and ClickHouse are connected, until ctx ends.
func (s *Service) runController(ctx context.Context) {
	t := time.NewTicker(s.cfg.ControlInterval)
	defer t.Stop()
	for s.store.Load() == nil || s.leases.Load() == nil || s.ch.Get() == nil {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	leases := s.leases.Load()
	c := &controller{
		actor: "controller:" + s.id, store: s.store.Load(), leases: leases,
		verdict: func(ctx context.Context, l *launch.Launch) (*api.Verdict, error) {
			v, _, err := s.verdictFor(ctx, l)
			if err == nil {
				s.metrics.verdicts.WithLabelValues(v.Verdict).Inc()
			}
			return v, err
		},
		audit: s.audit, interval: s.cfg.ControlInterval, timeout: s.cfg.QueryTimeout, log: s.log,
		observe: func(d string) {
			s.metrics.decisions.WithLabelValues(d).Inc()
			s.metrics.leases.Set(float64(len(leases.Held())))
		},
		noted: map[string]string{},
	}
	s.log.Info("controller running", "id", s.id, "interval", s.cfg.ControlInterval, "lease_ttl", s.cfg.LeaseTTL)
	c.Run(ctx)
	s.metrics.leases.Set(0)
}

// defaultID is the host name and a random suffix, so two reporters on one
// host (or two containers with one name) never share leases.
func defaultID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "reporter"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%x", host, b)
}

// ID is this reporter's name in leases and audit entries.
func (s *Service) ID() string { return s.id }

// noise is the thresholds reports apply.
func (s *Service) noise() api.NoiseThresholds {
	return api.NoiseThresholds{MinCount: s.cfg.NoiseMinCount, MinRatio: s.cfg.NoiseMinRatio}
}

func (s *Service) launchStore() (*launch.Store, error) {
	st := s.store.Load()
	if st == nil {
		return nil, fmt.Errorf("%w: the launch store (NATS) is not connected yet", errNotReady)
	}
	return st, nil
}

func (s *Service) clickhouse() (driver.Conn, error) {
	c := s.ch.Get()
	if c == nil {
		return nil, fmt.Errorf("%w: ClickHouse is not connected yet", errNotReady)
	}
	return c, nil
}

// checks are the dependencies the reporter cannot work without; /healthz
// and /readyz report on them (and on Redis), on both addresses.
func (s *Service) checks() map[string]admin.Check {
	return map[string]admin.Check{
		"nats": func(ctx context.Context) error {
			nc := s.nc.Load()
			if nc == nil {
				return errors.New("not connected yet")
			}
			if st := nc.Status(); st != nats.CONNECTED {
				return fmt.Errorf("connection is %s", st)
			}
			if s.store.Load() == nil {
				return fmt.Errorf("launches bucket %s not opened yet", launch.Bucket)
			}
			return nil
		},
		"clickhouse": func(ctx context.Context) error {
			c, err := s.clickhouse()
			if err != nil {
				return err
			}
			return c.Ping(ctx)
		},
	}
}
