package testenv_test

import (
	"net"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
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

// TestRedisStopsAndStartsOnItsPort: NewRedis does not start the server,
// Start does, Stop kills it and Start brings it back on the same address.
func TestRedisStopsAndStartsOnItsPort(t *testing.T) {
	r := testenv.NewRedis(t)
	if accepts(r.Addr()) {
		t.Fatal("redis accepts connections before Start")
	}
	r.Start()
	if !accepts(r.Addr()) || r.URL() != "redis://"+r.Addr()+"/0" {
		t.Fatalf("redis at %s (%s) does not accept connections after Start", r.Addr(), r.URL())
	}
	r.Stop()
	if accepts(r.Addr()) {
		t.Fatal("redis accepts connections after Stop")
	}
	r.Start()
	if !accepts(r.Addr()) {
		t.Fatal("redis does not accept connections after a restart")
	}
}

// TestClickHouseRestartKeepsData: a stopped ClickHouse comes back on the
// same port with the tables it had.
func TestClickHouseRestartKeepsData(t *testing.T) {
	ctx := testenv.Context(t)
	c := testenv.NewClickHouse(t)
	c.Start()
	conn, err := analytics.Open(ctx, analytics.Options{Addr: c.Addr(), Database: "dl_testenv", User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := analytics.Migrate(ctx, conn, "dl_testenv"); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	if accepts(c.Addr()) {
		t.Fatal("clickhouse accepts connections after Stop")
	}
	c.Start()
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var n uint64
		return conn.QueryRow(ctx, "SELECT count() FROM dl_testenv.comparisons").Scan(&n)
	})
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
