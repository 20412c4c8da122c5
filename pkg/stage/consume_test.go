package stage_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPanicHandedBack: a panicking handler is counted and its delivery
// handed back, not lost, and the stage goes on.
func TestPanicHandedBack(t *testing.T) {
	ns := testenv.StartJetStream(t)
	_, js := testenv.Connect(t, ns.URL())
	p := &panicky{}
	st, err := stage.New(stage.Config{Name: "toy", NATSURL: ns.URL(), Stream: stream.EnvelopesStream, AdminAddr: "127.0.0.1:0",
		Consumer: jetstream.ConsumerConfig{Durable: "toy", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second},
		Backoff:  retryFast}, p, testenv.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, st.Run)
	<-st.Ready()
	if _, err := js.Publish(testenv.Context(t), stream.EnvelopeSubject("l"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitStreamMsgs(t, js, stream.EnvelopesStream, 0)
	if s := st.Stats(); s.Panics != 1 || s.Naks != 1 || s.Acks != 1 || s.Redelivered != 1 || s.InFlight != 0 {
		t.Errorf("stats %+v", s)
	}
}

type panicky struct{ n int }

func (p *panicky) Start(context.Context) error { return nil }
func (p *panicky) Handle(ctx context.Context, m *stage.Msg) {
	if m.Delivered() == 1 {
		panic("first delivery")
	}
	_ = m.Ack(ctx)
}
