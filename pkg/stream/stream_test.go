package stream

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

func TestEnsureDedupeAndDeadLetter(t *testing.T) {
	ctx := testenv.Context(t)
	srv := testenv.StartJetStream(t)
	nc, err := Connect(srv.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for range 2 { // idempotent
		if err := Ensure(ctx, js, DefaultLimits); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := js.Publish(ctx, EnvelopeSubject("l1"), []byte("{}"), jetstream.WithMsgID("e1")); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := js.Stream(ctx, EnvelopesStream)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages after a duplicate publish, want 1", info.State.Msgs)
	}
	if err := DeadLetter(ctx, js, "comparator", PairSubject("l1"), []byte("junk"), errors.New("not JSON")); err != nil {
		t.Fatal(err)
	}
	dl, _ := js.Stream(ctx, DeadLetterStream)
	m, err := dl.GetLastMsgForSubject(ctx, DeadLetterSubject("comparator"))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "junk" || m.Header.Get(HeaderReason) != "not JSON" || m.Header.Get(HeaderSubject) != "darklaunch.pairs.l1" {
		t.Fatalf("dead letter %q %v", m.Data, m.Header)
	}
}
