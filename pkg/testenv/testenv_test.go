package testenv_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// server is what NewRedis and NewClickHouse return.
type server interface {
	Addr() string
	Start()
	Stop()
}

// TestServersStopAndStartOnTheirPort: New* does not start the server,
// Start does, Stop kills it and Start brings it back on the same address.
// (The comparator's ClickHouse outage test shows the data survives.)
func TestServersStopAndStartOnTheirPort(t *testing.T) {
	for name, newServer := range map[string]func(testing.TB) server{
		"redis":      func(t testing.TB) server { return testenv.NewRedis(t) },
		"clickhouse": func(t testing.TB) server { return testenv.NewClickHouse(t) },
	} {
		t.Run(name, func(t *testing.T) {
			s := newServer(t)
			if accepts(s.Addr()) {
				t.Fatal("accepts connections before Start")
			}
			s.Start()
			if !accepts(s.Addr()) {
				t.Fatal("does not accept connections after Start")
			}
			s.Stop()
			if accepts(s.Addr()) {
				t.Fatal("accepts connections after Stop")
			}
			s.Start()
			if !accepts(s.Addr()) {
				t.Fatal("does not accept connections after a restart")
			}
		})
	}
	if r := testenv.NewRedis(t); r.URL() != "redis://"+r.Addr()+"/0" {
		t.Errorf("redis URL %s for address %s", r.URL(), r.Addr())
	}
}

// TestConnectEnsuresStreams: the connection Connect returns has the
// darklaunch streams.
func TestConnectEnsuresStreams(t *testing.T) {
	srv := testenv.StartJetStream(t)
	nc, js := testenv.Connect(t, srv.URL())
	if !nc.IsConnected() {
		t.Fatalf("connection is %s", nc.Status())
	}
	ctx := testenv.Context(t)
	for _, name := range []string{stream.EnvelopesStream, stream.PairsStream, stream.DeadLetterStream} {
		if n, err := testenv.StreamMsgs(ctx, js, name); err != nil || n != 0 {
			t.Errorf("stream %s: %d messages, %v", name, n, err)
		}
	}
	if _, err := js.Publish(ctx, stream.EnvelopeSubject("l1"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if n, err := testenv.StreamMsgs(ctx, js, stream.EnvelopesStream); err != nil || n != 1 {
		t.Errorf("envelopes stream: %d messages after a publish, %v", n, err)
	}
}

// TestRunStopsOnce: Stop cancels the context Run gave, returns run's
// result, and returns it again without running anything twice.
func TestRunStopsOnce(t *testing.T) {
	errBoom := errors.New("boom")
	for _, want := range []error{nil, errBoom} {
		returned := 0
		r := testenv.Run(t, func(ctx context.Context) error {
			<-ctx.Done()
			returned++
			return want
		})
		for range 2 {
			if err := r.Stop(); !errors.Is(err, want) || (want == nil && err != nil) {
				t.Errorf("Stop = %v, want %v", err, want)
			}
		}
		if returned != 1 {
			t.Errorf("run returned %d times", returned)
		}
	}
}
