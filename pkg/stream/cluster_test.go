package stream_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// replicasOf reads a stream's configured replicas and how many peers
// (leader included) hold it now.
func replicasOf(ctx context.Context, js jetstream.JetStream, name string) (configured, peers int, err error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	if info.Cluster != nil && info.Cluster.Leader != "" {
		peers = 1 + len(info.Cluster.Replicas)
	}
	return info.Config.Replicas, peers, nil
}

// everyStream is every stream darklaunch creates, KV buckets included, with
// what creates it through a JetStream context.
var everyStream = map[string]func(context.Context, jetstream.JetStream) error{
	stream.EnvelopesStream: func(ctx context.Context, js jetstream.JetStream) error {
		return stream.Ensure(ctx, js)
	},
	stream.PairsStream: func(ctx context.Context, js jetstream.JetStream) error {
		return stream.Ensure(ctx, js)
	},
	stream.DeadLetterStream: func(ctx context.Context, js jetstream.JetStream) error {
		return stream.Ensure(ctx, js)
	},
	"KV_" + launch.Bucket: func(ctx context.Context, js jetstream.JetStream) error {
		_, err := launch.OpenBucket(ctx, js)
		return err
	},
	"KV_" + live.Bucket: func(ctx context.Context, js jetstream.JetStream) error {
		_, err := live.OpenBucket(ctx, js)
		return err
	},
	"KV_test_bucket": func(ctx context.Context, js jetstream.JetStream) error {
		_, err := stream.OpenKV(ctx, js, "test_bucket", "a bucket", time.Minute)
		return err
	},
}

// TestReplicas: on a 3-node cluster reached through a list of URLs, every
// stream and bucket gets the replicas of the JetStream context (R1 by
// default), an existing one is scaled up to R3 and back down to R1, and an
// R3 stream keeps taking writes after its leader's node is lost.
func TestReplicas(t *testing.T) {
	ctx := testenv.Context(t)
	c := testenv.StartCluster(t, 3)
	nc, err := stream.Connect(config.NATS{NATSURL: c.URL()}, "replicas-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	plain, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	check := func(js jetstream.JetStream, want int) {
		t.Helper()
		for name, create := range everyStream {
			testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
				if err := create(ctx, js); err != nil {
					return err
				}
				got, peers, err := replicasOf(ctx, js, name)
				if err != nil {
					return err
				}
				if got != want || peers != want {
					return fmt.Errorf("stream %s: %d replicas configured, %d peers, want %d", name, got, peers, want)
				}
				return nil
			})
		}
	}
	if stream.Replicas(plain) != 1 {
		t.Fatalf("Replicas of a plain context %d, want 1", stream.Replicas(plain))
	}
	check(plain, 1)
	r3, err := stream.JetStream(nc, config.NATS{NATSReplicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if stream.Replicas(r3) != 3 || stream.Replicas(stream.WithReplicas(r3, 1)) != 1 {
		t.Fatalf("Replicas %d, rewrapped %d", stream.Replicas(r3), stream.Replicas(stream.WithReplicas(r3, 1)))
	}
	check(r3, 3)                         // scaled up
	check(stream.WithReplicas(r3, 1), 1) // and down
	check(r3, 3)
	// A consumer created on a missing stream recreates it with the
	// context's replicas, and has them too.
	if err := r3.DeleteStream(ctx, stream.PairsStream); err != nil {
		t.Fatal(err)
	}
	cons, err := stream.EnsureConsumer(ctx, r3, stream.PairsStream, jetstream.ConsumerConfig{Durable: stream.ComparatorConsumer, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if got, peers, err := replicasOf(ctx, r3, stream.PairsStream); err != nil || got != 3 || peers != 3 {
		t.Fatalf("recreated pairs stream: %d replicas, %d peers, %v", got, peers, err)
	}
	if info, err := cons.Info(ctx); err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("consumer on the R3 stream: %+v, %v", info, err)
	}

	// Lose the envelope stream's leader as in a crash: a new one is
	// elected, the stream keeps what it held and takes new writes.
	leader := c.WaitStreamLeader(stream.EnvelopesStream)
	for i := range c.Size() {
		c.WaitStreamCurrent(i, stream.EnvelopesStream)
	}
	if _, err := r3.Publish(ctx, stream.EnvelopeSubject("l1"), []byte("before"), jetstream.WithMsgID("m1")); err != nil {
		t.Fatal(err)
	}
	c.Crash(leader)
	lost := time.Now()
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := r3.Publish(ctx, stream.EnvelopeSubject("l1"), []byte("after"), jetstream.WithMsgID("m2"))
		if err != nil {
			return fmt.Errorf("%w (connected to %s, leader %d)", err, nc.ConnectedUrl(), c.StreamLeader(stream.EnvelopesStream))
		}
		return nil
	})
	t.Logf("envelope stream writable again %v after its leader %s was lost", time.Since(lost).Round(time.Millisecond), c.Name(leader))
	if n, err := testenv.StreamMsgs(ctx, r3, stream.EnvelopesStream); err != nil || n != 2 {
		t.Fatalf("stream holds %d messages (%v), want 2", n, err)
	}
	c.Start(leader)
	c.WaitReady()
	c.WaitStreamCurrent(leader, stream.EnvelopesStream)
	if nc.Status() != nats.CONNECTED {
		t.Fatalf("client status %s", nc.Status())
	}
}

// TestReplicasNeedACluster: R3 on a single server is a clear error.
func TestReplicasNeedACluster(t *testing.T) {
	srv := testenv.StartJetStream(t)
	nc, err := stream.Connect(config.NATS{NATSURL: srv.URL()}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := stream.JetStream(nc, config.NATS{NATSReplicas: 3})
	err = stream.Ensure(testenv.Context(t), js)
	if err == nil || !strings.Contains(err.Error(), "replicas > 1 not supported") {
		t.Fatalf("R3 on one server: %v", err)
	}
}

// TestConnectURLListWithTLSAndCredentials: NATS_URL lists servers; with
// the first one down, Connect reaches the next with the credentials and
// TLS settings, and reconnects through the list.
func TestConnectURLListWithTLSAndCredentials(t *testing.T) {
	srv := testenv.StartSecureJetStream(t)
	cfg := srv.Client
	cfg.NATSURL = fmt.Sprintf("nats://127.0.0.1:%d,%s", testenv.FreePort(t), srv.URL())
	nc, err := stream.Connect(cfg, "list-test", nil, nats.DontRandomize())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	testenv.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected: %s", nc.Status())
		}
		return nil
	})
	if nc.ConnectedUrl() != srv.URL() || !nc.TLSRequired() {
		t.Fatalf("connected to %s, TLS %v", nc.ConnectedUrl(), nc.TLSRequired())
	}
	js, _ := jetstream.New(nc)
	if err := stream.Ensure(testenv.Context(t), js); err != nil {
		t.Fatalf("JetStream through the second URL: %v", err)
	}
	if got := len(nc.Servers()); got != 2 {
		t.Fatalf("client knows %d servers, want 2: %v", got, nc.Servers())
	}
}
