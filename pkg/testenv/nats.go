package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// Connect connects a test client to the NATS server at url the way the
// services connect (stream.Connect: it reconnects forever), creates the
// darklaunch streams, and returns the connection, closed when the test
// ends, with its JetStream context.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return ConnectWith(t, config.NATS{NATSURL: url})
}

// ConnectWith is Connect with credentials and TLS settings (a
// SecureJetStream's Client).
func ConnectWith(t testing.TB, cfg config.NATS) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := Client(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stream.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Client connects a test client as ConnectWith does, without creating or
// changing any stream: on a Cluster, where the services made the streams
// R3, ConnectWith's Ensure would scale them down to one replica.
func Client(t testing.TB, cfg config.NATS) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := stream.Connect(cfg, "test "+t.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// StreamMsgs is how many messages a stream holds now.
func StreamMsgs(ctx context.Context, js jetstream.JetStream, name string) (uint64, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// WaitStreamMsgs polls until a stream holds exactly n messages (a work
// queue is empty once every message was acked).
func WaitStreamMsgs(t testing.TB, js jetstream.JetStream, name string, n uint64) {
	t.Helper()
	CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := StreamMsgs(ctx, js, name)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("stream %s holds %d messages, want %d", name, got, n)
		}
		return nil
	})
}
