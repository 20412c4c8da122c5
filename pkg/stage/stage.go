// Package stage is the runtime every pipeline stage runs in (the
// shadow-runner and the comparator): it connects to NATS, ensures the
// stage's durable pull consumer (and re-creates it when it vanishes),
// reads deliveries continuously and hands them to the stage's Handler,
// keeps their ack deadlines alive while they are held, settles them (ack,
// nak, retry, dead letter with the reason, for a whole delivery or one
// item of a batch), holds and resends acks across a reconnect, counts all
// of it, serves the admin endpoints, and drains gracefully when its
// context ends.
//
// Its shape is config, constructor, then Run:
//
//	st, err := stage.New(cfg, handler, log) // validates cfg, binds the admin address
//	err = st.Run(ctx)                       // connect, Handler.Start, ensure consumer, read until ctx ends, drain, close
//
// Who settles what: the runtime hands every delivery to Handler.Handle as
// a *Msg, and from then on the handler owns it and settles it exactly once
// (Ack, Nak, Retry or DeadLetter); the runtime settles only what it never
// handed over (deliveries read after ctx ended: Nak), what a handler
// panicked on (dead-lettered, ReasonPanic), and, at the end of the drain,
// whatever is still held (Nak), so nothing is lost and nothing is acked
// unprocessed.
//
// Cancellation: when Run's ctx ends the runtime stops reading, lets the
// deliveries in progress finish (Handle runs under a context that is not
// cancelled), gives a Batcher a last Flush bounded by DrainTimeout, naks
// what is still held, waits for the goroutines started with Go, sends the
// acks it still holds, flushes and closes NATS, stops the admin server and
// returns nil.
package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config is where a stage reads from and how it paces itself. Zero
// durations and counts take the defaults named on each field.
type Config struct {
	// Name is the stage's name: its dead-letter subject is
	// darklaunch.deadletter.<Name>, and it starts its logs and errors.
	Name string
	// ClientName is the NATS connection's name (default Name).
	ClientName string
	// NATS is where the NATS server is (NATSURL, required) and how to
	// authenticate and secure the connection: a service's shared NATS
	// settings (stream.Connect).
	NATS config.NATS
	// Stream and Consumer are the durable pull consumer the stage reads:
	// Consumer.Durable on Stream, created or updated at start and created
	// again whenever a pull finds it gone.
	Stream   string
	Consumer jetstream.ConsumerConfig
	// AdminAddr serves /healthz (the NATS connection, plus the checks
	// added to Admin) and /metrics; New binds it.
	AdminAddr string
	// MetricPrefix starts the name of every metric the runtime declares
	// ("darklaunch_comparator_"); Unit names the messages in the received
	// counter ("pairs": darklaunch_comparator_pairs_received_total).
	MetricPrefix, Unit string
	// DeadLetterReasons are the reasons a dead letter is counted under,
	// created at zero so dashboards see 0 rather than nothing. The
	// runtime's own reasons, ReasonMaxDeliver and ReasonPanic, are always
	// among them.
	DeadLetterReasons []string
	// OnDeadLetter, when set, is called for each delivery dead-lettered
	// whole (the handler's, max_deliver's and panic's alike) once the dead
	// letter is stored, with the delivery and its data (a batch holds many
	// items): the loss accounting counts them per launch. An item
	// dead-lettered alone (DeadLetterItem) is the handler's to count: its
	// delivery may still be handed back, and the item dead-lettered again.
	OnDeadLetter func(m *Msg, reason string, data []byte)

	// Concurrency is how many deliveries are handled at once (default 1).
	Concurrency int
	// FetchBatch is the most deliveries the client pulls ahead of the
	// handlers (default 1: a delivery is pulled only when a slot is free,
	// so none waits unseen in the client's buffer with its ack deadline
	// running; with batch messages one pull per delivery costs little).
	// More pulls that many ahead, topping up when half are taken: cheaper
	// for a stream of single messages, but what waits in the buffer is
	// not kept alive and may be redelivered elsewhere meanwhile.
	FetchBatch int
	// FetchWait is how long one pull request lives on the server before
	// the client renews it (default 5s, at least 1s). The server sends an
	// idle heartbeat every fifth of it (at least 500ms); two missed
	// heartbeats make the stage create its consumer again (a consumer lost
	// with a leader, a stream re-created).
	FetchWait time.Duration
	// Backoff spaces the retries of start-up steps and failed pulls
	// (default 100ms doubling to 30s); its Max also caps redelivery delays.
	Backoff retry.Backoff
	// SetupTimeout bounds one start-up attempt (default 10s).
	SetupTimeout time.Duration
	// OpTimeout bounds a dead-letter publish, a confirmed ack and the
	// final flush of the NATS connection (default 5s).
	OpTimeout time.Duration
	// DrainTimeout bounds a Batcher's last Flush on shutdown (default 10s).
	DrainTimeout time.Duration
	// GCPercent is the garbage collector's target (debug.SetGCPercent)
	// when the environment sets no GOGC (0: Go's default, 100). A stage's
	// live heap is small and bounded by what it holds, so a higher target
	// trades a little memory for much less GC work per message.
	GCPercent int
	// Profiles serves Go's profiles on the admin address (the service's
	// PPROF setting).
	Profiles bool
}

// ReasonMaxDeliver is the dead-letter reason of a delivery Retry gave up
// on: its consumer's MaxDeliver was reached.
const ReasonMaxDeliver = "max_deliver"

// ReasonPanic is the dead-letter reason of a delivery its handler panicked
// on; the dead letter's Darklaunch-Reason header holds the panic's value.
const ReasonPanic = "panic"

// ErrPanic wraps the panic value of a handler in a dead letter's reason.
var ErrPanic = errors.New("handler panicked")

// ErrConfig wraps every error New reports about its Config.
var ErrConfig = errors.New("invalid stage settings")

// ErrNotConnected is the NATS health check's error before the connection
// exists or while it is down.
var ErrNotConnected = errors.New("not connected to NATS")

func (c *Config) fill() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: Name is required", ErrConfig)
	case c.NATS.NATSURL == "":
		return fmt.Errorf("%w: NATS_URL is required", ErrConfig)
	case c.Stream == "" || c.Consumer.Durable == "":
		return fmt.Errorf("%w: Stream and Consumer.Durable are required", ErrConfig)
	case c.Concurrency < 0 || c.FetchBatch < 0:
		return fmt.Errorf("%w: Concurrency and FetchBatch must not be negative", ErrConfig)
	}
	if c.ClientName == "" {
		c.ClientName = c.Name
	}
	if c.Unit == "" {
		c.Unit = "messages"
	}
	c.Concurrency = max(c.Concurrency, 1)
	if c.FetchBatch == 0 {
		c.FetchBatch = 1
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 5 * time.Second
	}
	c.FetchWait = max(c.FetchWait, time.Second)
	if c.Backoff.Min <= 0 {
		c.Backoff.Min = 100 * time.Millisecond
	}
	if c.Backoff.Max <= 0 {
		c.Backoff.Max = 30 * time.Second
	}
	if c.SetupTimeout <= 0 {
		c.SetupTimeout = 10 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	return nil
}

// Handler is what a stage does with its deliveries.
type Handler interface {
	// Start runs once Run is connected to NATS, before the consumer is
	// ensured: it sets up the handler's own dependencies (retrying them
	// with Stage.Retry) and starts its background work with Stage.Go. It
	// returns nil once the handler can take deliveries; if ctx ends first
	// Run returns nil, and any other error ends Run with that error.
	Start(ctx context.Context) error
	// Handle takes one delivery and owns it from then on: it settles it
	// exactly once, now or later, with Ack, Nak, Retry or DeadLetter (a
	// batch's bad items are dead-lettered alone with DeadLetterItem, and
	// the delivery settled for the rest). Handle runs in up to Concurrency
	// goroutines under a context that shutdown does not cancel: a delivery
	// that started is finished during the drain, so Handle bounds its own
	// work. A panic in Handle is recovered, counted
	// (handler_panics_total), and the delivery dead-lettered (ReasonPanic)
	// unless the handler settled it already; the stage goes on.
	Handle(ctx context.Context, m *Msg)
}

// Batcher is a Handler that holds deliveries after Handle returns and
// settles them together later (the comparator's ClickHouse batches, which
// it stores from its own goroutine, started with Stage.Go). A Batcher's
// Handle may block to push back (a full batch waiting for the insert
// before it): the runtime then reads nothing more.
type Batcher interface {
	Handler
	// Flush stores what is held and settles it. The runtime calls it once,
	// at the drain, after every Handle has returned, under a context
	// bounded by DrainTimeout; what is still held after it is handed back
	// (Nak) for immediate redelivery.
	Flush(ctx context.Context)
}

// Stage is one process of a pipeline stage.
type Stage struct {
	cfg   Config
	h     Handler
	batch Batcher
	log   *slog.Logger
	admin *admin.Server
	m     *metrics

	nc   atomic.Pointer[nats.Conn]
	js   jetstream.JetStream
	held held
	// unsent are settled deliveries whose ack could not be sent yet.
	unsent held
	wg     sync.WaitGroup

	ready     chan struct{}
	readyOnce sync.Once
	ran       atomic.Bool
	killed    atomic.Bool
	kill      atomic.Pointer[context.CancelFunc]
}

// New checks cfg and binds the admin address (a busy port fails here), so
// AdminAddr is known before Run. It touches neither NATS nor the handler.
func New(cfg Config, h Handler, log *slog.Logger) (*Stage, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{cfg: cfg, h: h, log: log, ready: make(chan struct{}), held: newHeld(), unsent: newHeld()}
	if b, ok := h.(Batcher); ok {
		s.batch = b
	}
	s.admin = admin.New(log)
	s.m = newMetrics(s.admin.Registry, &s.cfg)
	s.admin.AddCheck("nats", s.checkNATS)
	if cfg.Profiles {
		s.admin.HandleProfiles()
	}
	if err := s.admin.Listen(cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("admin server on %s: %w", cfg.AdminAddr, err)
	}
	return s, nil
}

// Admin is the stage's admin server: add health checks, metrics (its
// Registry) and routes before Run.
func (s *Stage) Admin() *admin.Server { return s.admin }

// AdminAddr is the address /healthz and /metrics are served on.
func (s *Stage) AdminAddr() string { return s.admin.Addr() }

// Ready is closed once the handler has started, the consumer exists and
// deliveries are being pulled.
func (s *Stage) Ready() <-chan struct{} { return s.ready }

// Conn is the NATS connection (nil before Run connects).
func (s *Stage) Conn() *nats.Conn { return s.nc.Load() }

// JetStream is the JetStream context of Conn, set before Handler.Start.
func (s *Stage) JetStream() jetstream.JetStream { return s.js }

// Log is the stage's logger.
func (s *Stage) Log() *slog.Logger { return s.log }

// Go runs f in a goroutine the stage owns: Run waits for it after the
// drain and before closing NATS, so f must return once Run's ctx ends.
func (s *Stage) Go(f func()) { s.wg.Go(f) }

// Retry runs a start-up step until it succeeds or ctx ends, spaced by the
// stage's Backoff, each attempt bounded by SetupTimeout; it reports whether
// the step succeeded.
func (s *Stage) Retry(ctx context.Context, what string, f func(context.Context) error) bool {
	return retry.Until(ctx, s.log, what, s.cfg.Backoff, s.cfg.SetupTimeout, f)
}

// Backoff is a fresh copy of the stage's retry schedule.
func (s *Stage) Backoff() retry.Backoff { b := s.cfg.Backoff; b.Reset(); return b }

func (s *Stage) checkNATS(context.Context) error {
	nc := s.nc.Load()
	if nc == nil {
		return ErrNotConnected
	}
	if st := nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: connection is %s", ErrNotConnected, st)
	}
	return nil
}

// Kill ends the stage the way a killed process ends: the NATS connection
// is closed at once, nothing held is acked or handed back (the server
// redelivers it after the consumer's AckWait), and Run returns. It is for
// tests of redelivery after a crash.
func (s *Stage) Kill() {
	s.killed.Store(true)
	if nc := s.nc.Load(); nc != nil {
		nc.Close()
	}
	if cancel := s.kill.Load(); cancel != nil {
		(*cancel)()
	}
}

// Run reads deliveries until ctx ends, then drains (see the package
// comment) and returns nil. NATS being unreachable is retried, not an
// error; Run fails only on a NATS URL, credentials or TLS file that cannot
// work, a handler whose Start fails for good, or a second call.
func (s *Stage) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: Run called twice", s.cfg.Name)
	}
	if s.cfg.GCPercent > 0 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(s.cfg.GCPercent)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.kill.Store(&cancel)

	// The admin server outlives the drain: /healthz and /metrics answer
	// until Run returns.
	actx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		if err := s.admin.Serve(actx); err != nil {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	defer func() { stopAdmin(); <-adminDone }()

	// Unlike a tap, a stage buffers while disconnected: its acks and naks
	// then reach the server after the reconnect instead of failing at
	// once (and costing a redelivery, work done twice).
	nc, err := stream.Connect(s.cfg.NATS, s.cfg.ClientName, s.log, nats.ReconnectBufSize(reconnectBuffer))
	if err != nil {
		// With retry-on-failed-connect this only fails on a bad URL or
		// option, which no retry fixes.
		return err
	}
	s.nc.Store(nc)
	if s.killed.Load() {
		nc.Close()
	}
	defer stream.Close(nc, s.cfg.OpTimeout, s.log)
	if s.js, err = stream.JetStream(nc, s.cfg.NATS); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	defer s.sendHeldAcks()
	defer s.wg.Wait() // the handler's goroutines end before NATS closes

	if err := s.h.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%s: %w", s.cfg.Name, err)
	}
	cons, ok := s.ensureConsumer(ctx)
	if !ok {
		return nil
	}
	s.log.Info(s.cfg.Name+" started", "consumer", s.cfg.Consumer.Durable, "concurrency", s.cfg.Concurrency,
		"ack_wait", s.cfg.Consumer.AckWait, "max_ack_pending", s.cfg.Consumer.MaxAckPending, "admin", s.AdminAddr())
	s.readyOnce.Do(func() { close(s.ready) })
	// Held deliveries (and settled ones whose ack waits to be sent) keep
	// their ack deadline alive until they are settled and acked, through
	// the drain too.
	kctx, stopKeepAlive := context.WithCancel(context.WithoutCancel(ctx))
	var keep sync.WaitGroup
	keep.Go(func() { retry.Every(kctx, s.keepAliveEvery(), s.keepAlive) })
	keep.Go(func() {
		retry.Every(kctx, ackRetryEvery, func() {
			if s.unsent.len() > 0 && nc.IsConnected() {
				s.retryAcks()
			}
		})
	})
	s.consume(ctx, cons)
	if s.batch != nil && !s.killed.Load() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
		s.batch.Flush(dctx)
		cancel()
	}
	stopKeepAlive()
	keep.Wait()
	s.handBack()
	s.log.Info(s.cfg.Name+" stopped", "stats", s.Stats())
	return nil
}

// ensureConsumer creates or updates the durable consumer, retrying until
// it succeeds or ctx ends.
func (s *Stage) ensureConsumer(ctx context.Context) (jetstream.Consumer, bool) {
	c, ok := retry.Get(ctx, s.log, "create consumer "+s.cfg.Consumer.Durable, s.Backoff(), s.cfg.SetupTimeout,
		func(ctx context.Context) (jetstream.Consumer, error) {
			return stream.EnsureConsumer(ctx, s.js, s.cfg.Stream, s.cfg.Consumer)
		})
	if ok {
		s.m.consumerSetups.Inc()
	}
	return c, ok
}

const (
	// reconnectBuffer is what the connection buffers while disconnected
	// (acks, naks, keep-alives): the client's default.
	reconnectBuffer = 8 << 20
	// ackRetryEvery is how often acks that could not be sent are tried
	// again while connected.
	ackRetryEvery = 250 * time.Millisecond
)

// keepAliveEvery is how often held deliveries are looked at (a quarter of
// AckWait); keepAlive restarts the deadlines half of AckWait old.
func (s *Stage) keepAliveEvery() time.Duration {
	aw := s.cfg.Consumer.AckWait
	if aw <= 0 {
		aw = 30 * time.Second // the server's default
	}
	return max(aw/4, 10*time.Millisecond)
}

// sendHeldAcks tries once more, at the end of Run, the acks that could not
// be sent; what still fails is left to the ack deadline.
func (s *Stage) sendHeldAcks() {
	if s.unsent.len() == 0 || s.killed.Load() {
		return
	}
	if n := s.retryAcks(); n > 0 {
		s.log.Warn("acks not sent at shutdown; those deliveries will be redelivered", "acks", n)
	}
}

// handBack naks every delivery still held after the drain, for immediate
// redelivery to another process; a killed stage leaves them to AckWait.
func (s *Stage) handBack() {
	msgs := s.held.all()
	if len(msgs) == 0 || s.killed.Load() {
		return
	}
	s.log.Warn("handing back deliveries still held at shutdown", "held", len(msgs))
	for _, m := range msgs {
		m.Nak(0)
	}
}

// Get is Stage.Retry for a start-up step that produces a value: the value
// of the first successful attempt, and false if ctx ended first.
func Get[T any](ctx context.Context, s *Stage, what string, f func(context.Context) (T, error)) (T, bool) {
	return retry.Get(ctx, s.log, what, s.cfg.Backoff, s.cfg.SetupTimeout, f)
}

// Consumer is the durable pull consumer of a stage shared by all its
// processes: explicit acks, delivering the whole stream. ackWait is how
// long a delivery may go unsettled before the server redelivers it,
// maxAckPending bounds the deliveries unsettled across every process, and
// maxDeliver the deliveries of one message (-1: no bound).
func Consumer(durable, description string, ackWait time.Duration, maxAckPending, maxDeliver int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   description,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: maxAckPending,
		MaxDeliver:    maxDeliver,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}
