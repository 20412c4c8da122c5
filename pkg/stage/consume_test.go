package stage

import (
	"context"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type panicking struct{}

func (panicking) Start(context.Context) error  { return nil }
func (panicking) Handle(context.Context, *Msg) { panic("boom") }

// deadLetters is a JetStream that stores what is published.
type deadLetters struct {
	jetstream.JetStream
	msgs []*nats.Msg
}

func (d *deadLetters) PublishMsg(_ context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	d.msgs = append(d.msgs, m)
	return &jetstream.PubAck{}, nil
}

// A panic in Handle is recovered at the worker's top, counted, and the
// delivery dead-lettered with the panic's value as the reason.
func TestHandleRecoversAPanic(t *testing.T) {
	s := bareStage(t)
	s.h = panicking{}
	dl := &deadLetters{}
	s.js = dl
	raw := &fakeMsg{}
	s.handle(context.Background(), s.receive(raw))
	st := s.Stats()
	if st.Panics != 1 || st.DeadLettered[ReasonPanic] != 1 || raw.acks != 1 || raw.naks != 0 || st.InFlight != 0 {
		t.Errorf("after a panic: stats %+v, acks %d, naks %d", st, raw.acks, raw.naks)
	}
	if len(dl.msgs) != 1 || !strings.Contains(dl.msgs[0].Header.Get(stream.HeaderReason), "boom") {
		t.Errorf("dead letters %v", dl.msgs)
	}
}
