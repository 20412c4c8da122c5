package stage_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/darklaunch/darklaunch/pkg/config"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stage/stagetest"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// toy is a stage that marks the ids of the JSON messages it reads as
// done, one by one (concurrently) or in batches. A message with the
// Toy-Batch header is a JSON array of items, each a toy message.
type toy struct {
	st      *stage.Stage
	done    *sync.Map
	stall   time.Duration
	batched bool
	// panics: the handler panics on ids starting with "panic-".
	panics bool

	mu    sync.Mutex
	held  []*stage.Msg
	ids   []string
	since time.Time
}

type toyBatch struct{ *toy }

const toyBatchHeader = "Toy-Batch"

func (h *toy) Stage() *stage.Stage           { return h.st }
func (h *toy) Run(ctx context.Context) error { return h.st.Run(ctx) }
func (h *toy) Start(context.Context) error   { return nil }

var errUndecodable = errors.New("malformed: not a toy message")

func (h *toy) decode(data []byte) (string, error) {
	var v struct{ ID string }
	if err := json.Unmarshal(data, &v); err != nil || v.ID == "" {
		return "", fmt.Errorf("%w: %v", errUndecodable, err)
	}
	if h.panics && strings.HasPrefix(v.ID, "panic-") {
		panic("toy panics on " + v.ID)
	}
	return v.ID, nil
}

// ids decodes a delivery: its good ids; a bad item of a batch is
// dead-lettered alone. ok is false when the delivery was settled here.
func (h *toy) items(ctx context.Context, m *stage.Msg) (ids []string, ok bool) {
	if m.Header(toyBatchHeader) == "" {
		id, err := h.decode(m.Data())
		if err != nil {
			m.DeadLetter(ctx, "malformed", err)
			return nil, false
		}
		return []string{id}, true
	}
	var items []json.RawMessage
	if err := json.Unmarshal(m.Data(), &items); err != nil {
		m.DeadLetter(ctx, "malformed", fmt.Errorf("%w: %v", errUndecodable, err))
		return nil, false
	}
	for _, it := range items {
		id, err := h.decode(it)
		if err != nil {
			if err := m.DeadLetterItem(ctx, "malformed", it, err); err != nil {
				m.Retry(ctx, err)
				return nil, false
			}
			continue
		}
		ids = append(ids, id)
	}
	return ids, true
}

func (h *toy) Handle(ctx context.Context, m *stage.Msg) {
	ids, ok := h.items(ctx, m)
	if !ok {
		return
	}
	time.Sleep(h.stall)
	for _, id := range ids {
		h.done.Store(id, true)
	}
	m.Ack()
}

func (h toyBatch) Start(ctx context.Context) error {
	h.st.Go(func() { retry.Every(ctx, 10*time.Millisecond, h.flushDue) })
	return nil
}

func (h toyBatch) Handle(ctx context.Context, m *stage.Msg) {
	ids, ok := h.items(ctx, m)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.held) == 0 {
		h.since = time.Now()
	}
	h.held = append(h.held, m)
	h.ids = append(h.ids, ids...)
}

// flushDue stores the batch when it is full or old enough.
func (h toyBatch) flushDue() {
	h.mu.Lock()
	defer h.mu.Unlock()
	size := 5
	if h.stall > 0 {
		size = 100
	}
	if len(h.held) >= size || (len(h.held) > 0 && time.Since(h.since) >= 50*time.Millisecond+h.stall) {
		h.flush()
	}
}

func (h toyBatch) Flush(context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.flush()
}

func (h toyBatch) flush() {
	for _, id := range h.ids {
		h.done.Store(id, true)
	}
	for _, m := range h.held {
		m.Ack()
	}
	h.held, h.ids = h.held[:0], h.ids[:0]
}

func setup(batched bool) stagetest.Setup {
	return func(t *testing.T, natsURL string, js jetstream.JetStream) stagetest.Fixture {
		done := &sync.Map{}
		n := 0
		publish := func(id string) string {
			if _, err := js.Publish(testenv.Context(t), stream.EnvelopeSubject("l"), []byte(`{"id":"`+id+`"}`),
				jetstream.WithMsgID(id)); err != nil {
				t.Fatal(err)
			}
			return id
		}
		return stagetest.Fixture{
			Name: "toy", Stream: stream.EnvelopesStream, Consumer: "toy",
			New: func(o stagetest.Options) stagetest.Instance {
				n++
				h := &toy{done: done, batched: batched, panics: o.Panic}
				if o.Stall {
					h.stall = 2 * time.Second
				}
				cfg := stage.Config{Name: "toy", NATS: config.NATS{NATSURL: natsURL}, Stream: stream.EnvelopesStream, AdminAddr: "127.0.0.1:0",
					Consumer: jetstream.ConsumerConfig{Durable: "toy", AckPolicy: jetstream.AckExplicitPolicy,
						AckWait: 5 * time.Second, MaxDeliver: 5},
					MetricPrefix: "toy_", Unit: "things", Concurrency: 4, DeadLetterReasons: []string{"malformed"}}
				if o.AckWait > 0 {
					cfg.Consumer.AckWait = o.AckWait
				}
				var hd stage.Handler = h
				if batched {
					hd = toyBatch{h}
				}
				st, err := stage.New(cfg, hd, testenv.Logger(t, slog.LevelDebug).With("instance", n))
				if err != nil {
					t.Fatal(err)
				}
				h.st = st
				return h
			},
			Publish:      func() string { return publish(envelope.NewID()) },
			PublishPanic: func() string { return publish("panic-" + envelope.NewID()) },
			PublishBatch: func(good, bad int) []string {
				var ids []string
				var items []string
				for i := range good {
					if i == bad {
						items = append(items, `{"no":"id"}`)
					}
					ids = append(ids, envelope.NewID())
					items = append(items, `{"id":"`+ids[i]+`"}`)
				}
				m := nats.NewMsg(stream.EnvelopeSubject("l"))
				m.Header.Set(toyBatchHeader, "1")
				m.Data = []byte("[" + strings.Join(items, ",") + "]")
				if _, err := js.PublishMsg(testenv.Context(t), m); err != nil {
					t.Fatal(err)
				}
				return ids
			},
			Processed: func(id string) bool { _, ok := done.Load(id); return ok },
			Subject:   stream.EnvelopeSubject("l"), Undecodable: []byte("not json"), Reason: "malformed", ItemReason: "malformed",
		}
	}
}

func TestConformanceConcurrent(t *testing.T) { stagetest.Run(t, setup(false)) }

func TestConformanceBatched(t *testing.T) { stagetest.Run(t, setup(true)) }

// TestPanicAfterSettling: a handler that panics after settling its
// delivery is counted; the delivery stays settled (no dead letter, no
// redelivery), and the stage goes on.
func TestPanicAfterSettling(t *testing.T) {
	ns := testenv.StartJetStream(t)
	_, js := testenv.Connect(t, ns.URL())
	st, err := stage.New(stage.Config{Name: "toy", NATS: config.NATS{NATSURL: ns.URL()}, Stream: stream.EnvelopesStream, AdminAddr: "127.0.0.1:0",
		Consumer: jetstream.ConsumerConfig{Durable: "toy", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second},
		Backoff:  retryFast}, ackThenPanic{}, testenv.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, st.Run)
	<-st.Ready()
	for range 2 {
		if _, err := js.Publish(testenv.Context(t), stream.EnvelopeSubject("l"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitStreamMsgs(t, js, stream.EnvelopesStream, 0)
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := st.Stats(); s.Panics != 2 || s.Acks != 2 || s.DeadLetteredTotal() != 0 || s.Redelivered != 0 || s.InFlight != 0 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	if n, err := testenv.StreamMsgs(testenv.Context(t), js, stream.DeadLetterStream); err != nil || n != 0 {
		t.Errorf("%d dead letters (%v)", n, err)
	}
}

type ackThenPanic struct{}

func (ackThenPanic) Start(context.Context) error { return nil }
func (ackThenPanic) Handle(ctx context.Context, m *stage.Msg) {
	m.Ack()
	panic("after the ack")
}

var retryFast = retry.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}

// gated acks each delivery once released, counting what it handled.
type gated struct {
	got     chan string
	release chan struct{}
	handled sync.Map // id -> times
}

func (g *gated) Start(context.Context) error { return nil }
func (g *gated) Handle(ctx context.Context, m *stage.Msg) {
	id := string(m.Data())
	n, _ := g.handled.LoadOrStore(id, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
	g.got <- id
	<-g.release
	m.Ack()
}

// TestAcksHeldAcrossReconnect (issue 11, point 4): acks made while NATS
// is down are held by the connection and reach the server after the
// reconnect, before the ack deadline, so nothing is redelivered and
// nothing handled twice; and the stage reads on after the reconnect by
// itself.
func TestAcksHeldAcrossReconnect(t *testing.T) {
	ns := testenv.StartJetStream(t)
	_, js := testenv.Connect(t, ns.URL())
	g := &gated{got: make(chan string, 10), release: make(chan struct{})}
	st, err := stage.New(stage.Config{Name: "toy", NATS: config.NATS{NATSURL: ns.URL()}, Stream: stream.EnvelopesStream, AdminAddr: "127.0.0.1:0",
		Consumer:    jetstream.ConsumerConfig{Durable: "toy", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Second},
		Concurrency: 3, Backoff: retryFast}, g, testenv.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, st.Run)
	<-st.Ready()
	ctx := testenv.Context(t)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := js.Publish(ctx, stream.EnvelopeSubject("l"), []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		<-g.got
	}
	ns.Stop()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st.Conn().IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	close(g.release) // the three acks are made while NATS is down
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := st.Stats(); s.InFlight != 0 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	ns.Start()
	testenv.WaitStreamMsgs(t, js, stream.EnvelopesStream, 0)
	if _, err := js.Publish(ctx, stream.EnvelopeSubject("l"), []byte("d")); err != nil {
		t.Fatal(err)
	}
	<-g.got
	testenv.WaitStreamMsgs(t, js, stream.EnvelopesStream, 0)
	s := st.Stats()
	if s.Redelivered != 0 || s.Received != 4 || s.Acks != 4 {
		t.Errorf("stats %+v: want 4 deliveries acked, none redelivered", s)
	}
	g.handled.Range(func(id, n any) bool {
		if c := n.(*atomic.Int32).Load(); c != 1 {
			t.Errorf("%s handled %d times", id, c)
		}
		return true
	})
}

// TestBufferedKeptAliveWhileBusy: with FetchBatch above 1 the client
// buffers deliveries ahead; when the handler stays busy past the ack
// deadline, those are taken out of the buffer and kept alive, not
// redelivered: each is handled once.
func TestBufferedKeptAliveWhileBusy(t *testing.T) {
	ns := testenv.StartJetStream(t)
	_, js := testenv.Connect(t, ns.URL())
	g := &gated{got: make(chan string, 10), release: make(chan struct{})}
	st, err := stage.New(stage.Config{Name: "toy", NATS: config.NATS{NATSURL: ns.URL()}, Stream: stream.EnvelopesStream, AdminAddr: "127.0.0.1:0",
		Consumer:    jetstream.ConsumerConfig{Durable: "toy", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second},
		Concurrency: 1, FetchBatch: 8, Backoff: retryFast}, g, testenv.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, st.Run)
	<-st.Ready()
	ctx := testenv.Context(t)
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		if _, err := js.Publish(ctx, stream.EnvelopeSubject("l"), []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	<-g.got
	// Hold the first past the deadline: 5 deliveries kept alive 3 times
	// each is over a second (every 500ms, from 500ms old).
	testenv.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if s := st.Stats(); s.KeepAlives < 15 || s.Received != 5 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	close(g.release)
	for range 4 {
		<-g.got
	}
	testenv.WaitStreamMsgs(t, js, stream.EnvelopesStream, 0)
	if s := st.Stats(); s.Redelivered != 0 || s.Received != 5 || s.Acks != 5 {
		t.Errorf("stats %+v: want 5 deliveries acked, none redelivered", s)
	}
	g.handled.Range(func(id, n any) bool {
		if c := n.(*atomic.Int32).Load(); c != 1 {
			t.Errorf("%s handled %d times", id, c)
		}
		return true
	})
}
