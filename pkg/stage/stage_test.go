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
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stage/stagetest"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go/jetstream"
)

// toy is a stage that marks the ids of the JSON messages it reads as
// done, one by one (concurrently) or in batches.
type toy struct {
	st      *stage.Stage
	done    *sync.Map
	stall   time.Duration
	batched bool
	// panics: the handler panics on ids starting with "panic-".
	panics bool
	held   []*stage.Msg
	ids    []string
	since  time.Time
}

type toyBatch struct{ *toy }

func (h *toy) Stage() *stage.Stage             { return h.st }
func (h *toy) Run(ctx context.Context) error   { return h.st.Run(ctx) }
func (h *toy) Start(ctx context.Context) error { return nil }

var errUndecodable = errors.New("malformed: not a toy message")

func (h *toy) decode(m *stage.Msg) (string, error) {
	var v struct{ ID string }
	if err := json.Unmarshal(m.Data(), &v); err != nil || v.ID == "" {
		return "", fmt.Errorf("%w: %v", errUndecodable, err)
	}
	if h.panics && strings.HasPrefix(v.ID, "panic-") {
		panic("toy panics on " + v.ID)
	}
	return v.ID, nil
}

func (h *toy) Handle(ctx context.Context, m *stage.Msg) {
	id, err := h.decode(m)
	if err != nil {
		m.DeadLetter(ctx, "malformed", err)
		return
	}
	time.Sleep(h.stall)
	h.done.Store(id, true)
	_ = m.Ack(ctx)
}

func (h toyBatch) Handle(ctx context.Context, m *stage.Msg) {
	id, err := h.decode(m)
	if err != nil {
		m.DeadLetter(ctx, "malformed", err)
		return
	}
	if len(h.held) == 0 {
		h.since = time.Now()
	}
	h.held = append(h.held, m)
	h.ids = append(h.ids, id)
}

func (h toyBatch) Next() stage.Pull {
	size := 5
	if h.stall > 0 {
		size = 100
	}
	if len(h.held) >= size || (len(h.held) > 0 && time.Since(h.since) >= 50*time.Millisecond+h.stall) {
		return stage.Pull{Flush: true}
	}
	return stage.Pull{Max: size - len(h.held), Wait: 20 * time.Millisecond}
}

func (h toyBatch) Flush(ctx context.Context) {
	for _, id := range h.ids {
		h.done.Store(id, true)
	}
	for _, m := range h.held {
		_ = m.AckNoWait()
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
						AckWait: 30 * time.Second, MaxDeliver: 5},
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
			Processed:    func(id string) bool { _, ok := done.Load(id); return ok },
			Subject:      stream.EnvelopeSubject("l"), Undecodable: []byte("not json"), Reason: "malformed",
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
	_ = m.Ack(ctx)
	panic("after the ack")
}

var retryFast = retry.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
