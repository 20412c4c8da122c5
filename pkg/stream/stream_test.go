package stream_test

import (
	"errors"
	"fmt"
	"github.com/darklaunch/darklaunch/pkg/config"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

func TestEnsureDedupeAndDeadLetter(t *testing.T) {
	ctx := testenv.Context(t)
	srv := testenv.StartJetStream(t)
	nc, err := stream.Connect(config.NATS{NATSURL: srv.URL()}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for range 2 { // idempotent
		if err := stream.Ensure(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := js.Publish(ctx, stream.EnvelopeSubject("l1"), []byte("{}"), jetstream.WithMsgID("e1")); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := js.Stream(ctx, stream.EnvelopesStream)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages after a duplicate publish, want 1", info.State.Msgs)
	}
	if err := stream.DeadLetter(ctx, js, "comparator", stream.PairSubject("l1"), []byte("junk"), errors.New("not JSON")); err != nil {
		t.Fatal(err)
	}
	dl, _ := js.Stream(ctx, stream.DeadLetterStream)
	m, err := dl.GetLastMsgForSubject(ctx, stream.DeadLetterSubject("comparator"))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "junk" || m.Header.Get(stream.HeaderReason) != "not JSON" || m.Header.Get(stream.HeaderSubject) != "darklaunch.pairs.l1" {
		t.Fatalf("dead letter %q %v", m.Data, m.Header)
	}
}

// syncBuffer is a log destination NATS callback goroutines may write to.
type syncBuffer struct{ testenv.Buffer }

func (b *syncBuffer) count(s string) int { return strings.Count(b.String(), s) }

func (b *syncBuffer) await(t *testing.T, s string) {
	t.Helper()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if b.count(s) == 0 {
			return fmt.Errorf("nothing logged with %q", s)
		}
		return nil
	})
}

// TestConnectLogsAndClose: with a logger, stream.Connect logs disconnects and
// reconnects, unless an option replaces the handler; stream.Close closes a
// connection whether it is connected or not.
func TestConnectLogsAndClose(t *testing.T) {
	srv := testenv.StartJetStream(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	nc, err := stream.Connect(config.NATS{NATSURL: srv.URL()}, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	replaced := make(chan error, 1)
	own, err := stream.Connect(config.NATS{NATSURL: srv.URL()}, "test-own", log, nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
		if err != nil {
			replaced <- err
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()

	srv.Stop()
	logs.await(t, "disconnected from NATS")
	select {
	case <-replaced:
	case <-time.After(10 * time.Second):
		t.Fatal("the caller's disconnect handler was not called")
	}
	if n := logs.count("disconnected from NATS"); n != 1 {
		t.Errorf("%d disconnects logged, want 1: the caller's handler replaces the logging one", n)
	}
	stream.Close(own, 5*time.Second, log)
	if !own.IsClosed() {
		t.Error("stream.Close left a disconnected connection open")
	}

	srv.Start()
	logs.await(t, "reconnected to NATS")
	stream.Close(nc, 5*time.Second, log)
	if !nc.IsClosed() {
		t.Error("stream.Close left a connected connection open")
	}
	if n := logs.count("flushing NATS"); n != 0 {
		t.Errorf("a flush failed: %d logged", n)
	}
}

// TestEnsureConsumerRecreatesAMissingStream: a consumer on a stream someone
// deleted after Ensure is created with the stream.
func TestEnsureConsumerRecreatesAMissingStream(t *testing.T) {
	ctx := testenv.Context(t)
	srv := testenv.StartJetStream(t)
	_, js := testenv.Connect(t, srv.URL())
	if err := js.DeleteStream(ctx, stream.PairsStream); err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.ConsumerConfig{Durable: stream.ComparatorConsumer, AckPolicy: jetstream.AckExplicitPolicy}
	for range 2 { // the second call updates
		c, err := stream.EnsureConsumer(ctx, js, stream.PairsStream, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if info := c.CachedInfo(); info.Stream != stream.PairsStream || info.Name != stream.ComparatorConsumer {
			t.Fatalf("consumer %s on %s", info.Name, info.Stream)
		}
	}
}

// The streams' limits come from the shared NATS settings; a server without
// the storage to reserve them refuses with ErrStorage, which says what to
// change.
func TestStreamLimitsAndStorage(t *testing.T) {
	ctx := testenv.Context(t)
	srv := testenv.StartJetStream(t, func(o *server.Options) { o.JetStreamMaxStore = 256 << 20 })
	nc, err := stream.Connect(config.NATS{NATSURL: srv.URL()}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The defaults (3 x 10 GiB) do not fit in 256 MiB.
	js, err := stream.JetStream(nc, config.NATS{NATSReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(ctx, js); !errors.Is(err, stream.ErrStorage) || !strings.Contains(err.Error(), "NATS_STREAM_MAX_BYTES") {
		t.Fatalf("Ensure with 3 x 10 GiB on 256 MiB: %v, want ErrStorage naming the setting", err)
	}
	small, err := stream.JetStream(nc, config.NATS{NATSReplicas: 1, NATSStreamMaxBytes: 64 << 20, NATSStreamMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(ctx, small); err != nil {
		t.Fatalf("Ensure with 3 x 64 MiB on 256 MiB: %v", err)
	}
	for _, name := range []string{stream.EnvelopesStream, stream.PairsStream, stream.DeadLetterStream} {
		s, err := small.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if c := s.CachedInfo().Config; c.MaxBytes != 64<<20 || c.MaxAge != time.Hour {
			t.Errorf("%s: max bytes %d, max age %s; want 64 MiB and 1h", name, c.MaxBytes, c.MaxAge)
		}
	}
	if lim := stream.StreamLimits(js); lim != stream.DefaultLimits {
		t.Errorf("limits of a context without settings: %+v, want the defaults", lim)
	}
}
