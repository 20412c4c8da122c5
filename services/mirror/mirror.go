// Package mirror is darklaunch's tap: a reverse proxy in front of a primary
// service that serves every request from the primary, unchanged, and
// publishes a sample of them (request, primary response, latency) as
// envelopes to NATS JetStream for replay against shadows. While a launch is
// promoted, the new version serves the launch's share of live traffic
// instead, sticky per user.
//
// The proxy never waits for darklaunch: the routing decision is an atomic
// load of a routing table rebuilt on every launch change, then a sticky-key
// hash or a random number per launch; bodies are teed into bounded captures while they
// stream, and finished envelopes go to a bounded queue with a non-blocking
// send; publisher goroutines batch and publish them, retrying through NATS
// outages (publish.go). When NATS is down or slow, envelopes are held
// within the queue's budget, then dropped and counted, never requests.
// While a launch is live, a goroutine writes its live counters to the KV
// bucket darklaunch_live (package live) every few seconds, for the
// promotion gates.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sourcegraph/conc"

	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// ErrAlreadyRun is returned by a second call to Run.
var ErrAlreadyRun = errors.New("mirror: Run called twice")

// Service is one tap process: the proxy, its admin server and the
// publishing pipeline.
type Service struct {
	cfg    Config
	log    *slog.Logger
	target *url.URL

	// plain serves requests that are not sampled; tapped has the capture
	// hooks. Both share one transport and buffer pool, so a request costs
	// the same whichever serves it.
	plain, tapped *httputil.ReverseProxy
	transport     *primaryTransport
	rewrite       func(*httputil.ProxyRequest)
	pool          *bufferPool
	errLog        *log.Logger

	ln    net.Listener
	srv   *http.Server
	admin *admin.Server

	queue      chan queued
	queueBytes atomic.Int64
	// outcomes counts batches sent whose outcome (published or dropped) is
	// not counted yet; the drain waits for it.
	outcomes sync.WaitGroup
	// pub is the publisher's state (publish.go).
	pub publishing

	// watcher is nil until the launch bucket could be opened.
	watcher atomic.Pointer[launch.Watcher]
	// routes is the routing table derived from the watcher's snapshot
	// (never nil); routesChanged is closed and replaced at each swap.
	routes        atomic.Pointer[routes]
	routesChanged atomic.Pointer[chan struct{}]
	buildMu       sync.Mutex // held while building and storing routes
	builder       *routeBuilder
	live          liveRegistry

	nc          atomic.Pointer[nats.Conn]
	streamReady atomic.Bool
	// ensureAgain asks the stream loop to re-create the streams (a publish
	// found no stream).
	ensureAgain chan struct{}

	// drainDeadline is written before the draining channel is closed and
	// read by publishers after they see it closed.
	drainDeadline time.Time
	// publishHook, when set (tests), runs before each publish.
	publishHook func(*envelope.Envelope)

	stats *metrics
	acct  accounting // per-launch counts for the report (accounting.go)

	// liveKV is the live report bucket, owned by whoever reports (see
	// reportLive); nil until opened and after a failed report.
	liveKV jetstream.KeyValue

	// protection seals sensitive header values (seal.go); its keys also
	// verify replay markers (trust.go). trusted are the peers whose
	// forwarding headers are believed.
	protection *protection
	trusted    []netip.Prefix

	lastProxyErrLog, lastPublishErrLog, lastLiveErrLog, lastLiveReportErrLog atomic.Int64
	lastFramingLog, lastMarkerLog                                            atomic.Int64
	ran                                                                      atomic.Bool

	// returnMemory: the process is the tap's own (NewProcess), so memory
	// taken by a publish backlog is given back once it drained.
	returnMemory bool
}

// New validates cfg, binds the proxy and admin listeners and returns the
// service; nothing is served and NATS is not contacted until Run.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	target, err := cfg.primary()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prot, err := cfg.sealing()
	if err != nil {
		return nil, err
	}
	trusted, err := parseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	if warn, msg := prot.describe(); warn {
		log.Warn(msg)
	} else {
		log.Info(msg)
	}
	s := &Service{
		protection:  prot,
		trusted:     trusted,
		cfg:         cfg,
		log:         log,
		target:      target,
		transport:   newPrimaryTransport(target, cfg),
		queue:       make(chan queued, cfg.QueueSize),
		ensureAgain: make(chan struct{}, 1),
	}
	pool := &bufferPool{}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	rewrite := newRewrite(target, cfg)
	s.pool, s.errLog, s.rewrite = pool, errLog, rewrite
	s.pub.init()
	s.builder = newRouteBuilder(s)
	s.routes.Store(&routes{})
	changed := make(chan struct{})
	s.routesChanged.Store(&changed)
	s.plain = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    s.transport,
		BufferPool:   pool,
		ErrorLog:     errLog,
		ErrorHandler: s.errorHandler,
	}
	s.tapped = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      s.transport,
		BufferPool:     pool,
		ErrorLog:       errLog,
		ErrorHandler:   s.tapErrorHandler,
		ModifyResponse: s.modifyResponse,
	}

	s.admin = admin.New(log)
	s.registerMetrics(s.admin.Registry)
	s.acct.ledger = live.NewLedger(live.RoleTap, s.cfg.TapID)
	s.admin.AddCheck("nats", s.checkNATS)
	s.admin.AddCheck("launches", s.checkLaunches)
	s.admin.AddCheck("streams", s.checkStreams)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("mirror: listen on MIRROR_ADDR %s: %w", cfg.Addr, err)
	}
	s.ln = guardListener{Listener: ln, s: s}
	if err = s.admin.Listen(cfg.AdminAddr); err != nil {
		s.ln.Close()
		return nil, fmt.Errorf("mirror: listen on MIRROR_ADMIN_ADDR %s: %w", cfg.AdminAddr, err)
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.BodyReadTimeout,
		IdleTimeout:       cfg.ClientIdleTimeout,
		ConnState:         connState,
		ErrorLog:          errLog,
		// OPTIONS * belongs to the primary, not to the tap.
		DisableGeneralOptionsHandler: true,
	}
	// /livez says the proxy is up, whatever NATS does: a load balancer
	// should route on it, since the tap serves traffic without NATS.
	s.admin.Handle("GET /livez", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	}))
	if cfg.Profiles() {
		s.admin.HandleProfiles()
	}
	return s, nil
}

// Addr is the address the proxy listens on.
func (s *Service) Addr() string { return s.ln.Addr().String() }

// AdminAddr is the address serving /healthz, /livez and /metrics.
func (s *Service) AdminAddr() string { return s.admin.Addr() }

// Handler returns the proxy handler (the Service itself), for embedding the
// tap in another server.
func (s *Service) Handler() http.Handler { return s }

// Registry is the Prometheus registry served on /metrics.
func (s *Service) Registry() *prometheus.Registry { return s.admin.Registry }

// Run serves until ctx is cancelled, then shuts down: it stops accepting
// requests and waits for those in flight, publishes what is queued and
// waits for acks (bounded by MIRROR_DRAIN_TIMEOUT), and closes NATS. It
// returns nil after a clean shutdown, or the error that stopped serving.
func (s *Service) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var servers conc.WaitGroup
	serve := func(name string, srv *http.Server, ln net.Listener) {
		servers.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("server stopped", "server", name, "err", err)
				cancel(fmt.Errorf("mirror: %s server: %w", name, err))
			}
		})
	}
	serve("proxy", s.srv, s.ln)
	// The admin server answers until the drain is over.
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()
	servers.Go(func() {
		if err := s.admin.Serve(adminCtx); err != nil {
			s.log.Error("server stopped", "server", "admin", "err", err)
			cancel(fmt.Errorf("mirror: %w", err))
		}
	})
	s.log.Info("mirror serving", "addr", s.Addr(), "admin", s.AdminAddr(), "primary", s.target.String(),
		"mirror_service", s.cfg.Service, "tap_id", s.cfg.TapID)

	nc := s.connect(ctx)
	var background conc.WaitGroup
	if s.returnMemory {
		background.Go(func() { s.memoryLoop(ctx) })
	}
	var js jetstream.JetStream
	var pubs *publishers
	if nc != nil {
		var err error
		js, err = stream.JetStream(nc, s.cfg.NATS,
			jetstream.WithPublishAsyncMaxPending(s.cfg.MaxPending),
			jetstream.WithPublishAsyncTimeout(s.cfg.AckTimeout),
			jetstream.WithPublishAsyncAckHandler(s.onAck),
			jetstream.WithPublishAsyncErrHandler(s.onPublishErr),
		)
		if err != nil {
			// Only invalid options fail here, and they are validated.
			cancel(fmt.Errorf("mirror: jetstream: %w", err))
		} else {
			background.Go(func() { s.streamLoop(ctx, js) })
			background.Go(func() { s.watchLoop(ctx, js, nc) })
			background.Go(func() { s.liveReportLoop(ctx, js) })
			pubs = s.startPublishing(js, nc)
		}
	}

	<-ctx.Done()
	s.log.Info("mirror shutting down")

	// Stop taking requests; the ones in flight finish and queue envelopes.
	shutCtx, cancelShut := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	if err := s.srv.Shutdown(shutCtx); err != nil {
		s.log.Warn("requests still in flight after MIRROR_SHUTDOWN_TIMEOUT; closing their connections", "err", err)
		_ = s.srv.Close()
	}
	cancelShut()

	// Publish what is held, retrying, within the drain timeout; count
	// what is left as dropped.
	s.drainPublishing(pubs)
	background.Wait()
	// The requests have finished: the live counters are final.
	if js != nil {
		finalCtx, cancelFinal := context.WithTimeout(context.Background(), finalLiveReportTimeout)
		s.reportLive(finalCtx, js)
		cancelFinal()
	}
	s.buildMu.Lock()
	s.builder.closeTargets()
	s.buildMu.Unlock()
	if nc != nil {
		nc.Close()
	}

	stopAdmin()
	servers.Wait()
	s.transport.CloseIdleConnections()

	st := s.Stats()
	s.log.Info("mirror stopped", "proxied", st.Proxied, "sampled", st.Sampled, "published", st.Published, "dropped", st.DroppedTotal())
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// backoff spaces the retries of every NATS step, jittered so that a fleet
// of taps does not come back to a restarted server in step.
func backoff(max time.Duration) retry.Backoff {
	return retry.Backoff{Min: 250 * time.Millisecond, Max: max, Jitter: true}
}

// opTimeout bounds one attempt to create the streams or open the bucket.
const opTimeout = 10 * time.Second

// connect returns a NATS connection, retrying until ctx ends. stream.Connect
// succeeds even while the server is down (it keeps reconnecting), so this
// only loops on errors that are not about the server being away.
func (s *Service) connect(ctx context.Context) *nats.Conn {
	var nc *nats.Conn
	ok := retry.Until(ctx, s.log, "connect to NATS (the proxy serves without mirroring)", backoff(30*time.Second), 0,
		func(context.Context) error {
			var err error
			nc, err = stream.Connect(s.cfg.NATS, "darklaunch-mirror "+s.cfg.TapID, s.log,
				// The tap's operators need to know what a disconnect costs them.
				nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
					if err != nil { // nil: our own Close at shutdown
						s.log.Warn("NATS disconnected; envelopes are held and retried within MIRROR_QUEUE_SIZE and MIRROR_QUEUE_MAX_BYTES until it is back", "err", err)
					}
				}),
				nats.ReconnectHandler(func(c *nats.Conn) {
					s.log.Info("reconnected to NATS: mirroring again", "url", c.ConnectedUrlRedacted())
				}),
			)
			return err
		})
	if !ok {
		return nil
	}
	s.nc.Store(nc)
	return nc
}

// streamLoop creates the streams (retrying with backoff), and again when a
// publish reports that no stream answers or no ack came in time.
func (s *Service) streamLoop(ctx context.Context, js jetstream.JetStream) {
	for {
		if !retry.Until(ctx, s.log, "create streams", backoff(10*time.Second), opTimeout, func(ctx context.Context) error {
			return stream.Ensure(ctx, js)
		}) {
			return
		}
		s.streamReady.Store(true)
		select {
		case <-ctx.Done():
			return
		case <-s.ensureAgain:
			s.streamReady.Store(false)
			s.log.Warn("a publish found no envelope stream or went unanswered; ensuring the streams")
			// Do not hammer the server if the stream keeps vanishing.
			if !retry.Sleep(ctx, time.Second) {
				return
			}
		}
	}
}

// watchLoop opens the launch bucket and runs a watcher on it (the watcher
// restarts its watch on reconnects and failures by itself). Until the bucket
// is read nothing is mirrored; when the watch breaks, the last snapshot stays
// in force.
func (s *Service) watchLoop(ctx context.Context, js jetstream.JetStream, nc *nats.Conn) {
	kv, ok := retry.Get(ctx, s.log, "open the launch bucket (mirroring nothing until then)", backoff(10*time.Second), opTimeout,
		func(ctx context.Context) (jetstream.KeyValue, error) { return launch.OpenBucket(ctx, js) })
	if !ok {
		return
	}
	w := launch.NewWatcher(kv, nc, s.log)
	s.watcher.Store(w)
	var routing conc.WaitGroup
	routing.Go(func() { s.routesLoop(ctx, w) })
	_ = w.Run(ctx) // returns only when ctx is done
	routing.Wait()
}

// memoryLoop gives the memory a publish backlog took back to the system
// once the backlog has drained. The runtime does so by itself only as it
// collects, and an idle tap does not collect: after NATS stalled at full
// load, the RSS stayed at the memory limit until traffic came back.
func (s *Service) memoryLoop(ctx context.Context) {
	backlog := false
	retry.Every(ctx, time.Second, func() {
		// held counts every envelope the publisher holds: queued, in a
		// batch, awaiting an ack or a retry.
		switch held := s.pub.held.Load(); {
		case held >= int64(s.cfg.QueueSize)/4:
			backlog = true
		case backlog && held == 0:
			backlog = false
			debug.FreeOSMemory()
			s.log.Debug("publish backlog drained; memory returned to the system")
		}
	})
}

func (s *Service) checkNATS(context.Context) error {
	nc := s.nc.Load()
	if nc == nil {
		return errors.New("not connected yet")
	}
	if !nc.IsConnected() {
		return fmt.Errorf("NATS connection is %s", nc.Status())
	}
	return nil
}

func (s *Service) checkLaunches(context.Context) error {
	w := s.watcher.Load()
	if w == nil {
		return errors.New("launch bucket not opened yet: mirroring nothing")
	}
	select {
	case <-w.Ready():
		return nil
	default:
		return errors.New("launches not loaded yet: mirroring nothing")
	}
}

func (s *Service) checkStreams(context.Context) error {
	if !s.streamReady.Load() {
		return errors.New("envelope stream not ensured yet")
	}
	return nil
}
