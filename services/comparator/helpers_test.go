package comparator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// chServer is a private clickhouse-server a test can stop (SIGKILL, as in
// a crash) and start again on the same ports and data. It is configured
// like testenv.StartClickHouse, which cannot restart its server.
type chServer struct {
	t         *testing.T
	bin, dir  string
	tcp, http int

	mu  sync.Mutex
	cmd *exec.Cmd
	log *os.File
}

func newCHServer(t *testing.T) *chServer {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		bin = "/usr/sbin/clickhouse-server"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("clickhouse-server is not installed: run `make deps` to install the servers integration tests need")
		}
	}
	c := &chServer{t: t, bin: bin, dir: t.TempDir(), tcp: testenv.FreePort(t), http: testenv.FreePort(t)}
	users := `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <tcp_port>%d</tcp_port>
  <http_port>%d</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>%[3]s/data/</path>
  <tmp_path>%[3]s/tmp/</tmp_path>
  <user_files_path>%[3]s/user_files/</user_files_path>
  <format_schema_path>%[3]s/format_schemas/</format_schema_path>
  <users_config>%[3]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
`, c.tcp, c.http, c.dir)
	for name, body := range map[string]string{"config.xml": config, "users.xml": users} {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(c.dir, "server.log")); err == nil && len(b) > 0 {
				t.Logf("clickhouse-server log (last 2000 bytes):\n%s", b[max(0, len(b)-2000):])
			}
		}
	})
	return c
}

func (c *chServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", c.tcp) }

// Start runs the server and waits until it accepts connections.
func (c *chServer) Start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(c.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "--config-file="+filepath.Join(c.dir, "config.xml"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = c.dir, logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start clickhouse-server: %v", err)
	}
	c.cmd, c.log = cmd, logf
	testenv.CheckFor(c.t, 30*time.Second, 50*time.Millisecond, func() error {
		conn, err := net.DialTimeout("tcp", c.Addr(), 200*time.Millisecond)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// Stop kills the server, as a crash would.
func (c *chServer) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.log.Close()
	c.cmd, c.log = nil, nil
}

// harness is a comparator under test with its JetStream and ClickHouse.
type harness struct {
	t    *testing.T
	ctx  context.Context
	ns   *testenv.JetStream
	nc   *nats.Conn
	js   jetstream.JetStream
	db   string
	ch   driver.Conn // for the test's own queries; nil until query is first used
	addr string      // ClickHouse native address
	logs *testWriter
}

var nonIdent = regexp.MustCompile(`[^A-Za-z0-9_]+`)

func newHarness(t *testing.T, chAddr string) *harness {
	t.Helper()
	h := &harness{t: t, logs: newTestWriter(t), ctx: testenv.Context(t), ns: testenv.StartJetStream(t), addr: chAddr,
		db: "cmp_" + strings.ToLower(nonIdent.ReplaceAllString(t.Name(), "_"))}
	if len(h.db) > 60 {
		h.db = h.db[:60]
	}
	nc, err := nats.Connect(h.ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	h.nc = nc
	if h.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(h.ctx, h.js, stream.DefaultLimits); err != nil {
		t.Fatal(err)
	}
	return h
}

// config is a fast-flushing configuration pointing at the harness.
func (h *harness) config() Config {
	cfg := DefaultConfig()
	cfg.NATSURL = h.ns.URL()
	cfg.ClickHouseAddr = h.addr
	cfg.ClickHouseDatabase = h.db
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.BatchSize = 100
	cfg.FlushInterval = 100 * time.Millisecond
	cfg.InsertTimeout = 2 * time.Second
	cfg.RetryMax = 200 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg
}

// running is a comparator started by the harness.
type running struct {
	*Service
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, err is then set
	err    error
}

// stop cancels Run and waits for it to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run returned %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of cancellation")
	}
}

func (h *harness) start(cfg Config) *running {
	h.t.Helper()
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := New(cfg, log)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	r := &running{Service: svc, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = svc.Run(ctx)
		close(r.done)
	}()
	h.t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// testWriter sends logs to t.Log, so they show only for failed tests, and
// drops what NATS callbacks log after the test is over.
type testWriter struct {
	t      *testing.T
	mu     sync.Mutex
	closed bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// publish publishes a pair with its envelope id as Nats-Msg-Id (or msgID
// if given) and reports whether the stream took it as a duplicate.
func (h *harness) publish(p *envelope.Pair, msgID string) bool {
	h.t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		h.t.Fatal(err)
	}
	if msgID == "" {
		msgID = p.Envelope.ID
	}
	ack, err := h.js.Publish(h.ctx, stream.PairSubject(p.Envelope.LaunchID), data, jetstream.WithMsgID(msgID))
	if err != nil {
		h.t.Fatal(err)
	}
	return ack.Duplicate
}

func (h *harness) publishRaw(subject string, data []byte) {
	h.t.Helper()
	if _, err := h.js.Publish(h.ctx, subject, data); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) conn() driver.Conn {
	h.t.Helper()
	if h.ch == nil {
		conn, err := analytics.Open(h.ctx, analytics.Options{Addr: h.addr, Database: h.db, User: "default"})
		if err != nil {
			h.t.Fatal(err)
		}
		h.t.Cleanup(func() { conn.Close() })
		h.ch = conn
	}
	return h.ch
}

// count returns the number of rows of a launch, collapsed (FINAL) or raw.
func (h *harness) count(launchID string, final bool) (uint64, error) {
	q := fmt.Sprintf("SELECT count() FROM %s.comparisons", h.db)
	if final {
		q += " FINAL"
	}
	var n uint64
	err := h.conn().QueryRow(h.ctx, q+" WHERE launch_id = ?", launchID).Scan(&n)
	return n, err
}

// waitRows waits until the launch has exactly n rows with FINAL.
func (h *harness) waitRows(launchID string, n uint64) {
	h.t.Helper()
	testenv.CheckFor(h.t, 30*time.Second, 50*time.Millisecond, func() error {
		got, err := h.count(launchID, true)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d rows for launch %s, want %d", got, launchID, n)
		}
		return nil
	})
}

// storedRow is the part of a comparisons row the tests check.
type storedRow struct {
	Route, Path, Method, TapID          string
	PrimaryStatus, ShadowStatus         uint16
	PrimaryLatency, ShadowLatency       uint64
	Match, StatusMatch, CTMatch, BMatch uint8
	ShadowError, ShadowErrorKind, Note  string
	DiffPaths, DiffKinds                []string
	ReceivedAtUS                        int64
	TS                                  time.Time
}

func (h *harness) row(envelopeID string) storedRow {
	h.t.Helper()
	var r storedRow
	err := h.conn().QueryRow(h.ctx, fmt.Sprintf(`SELECT route, path, method, tap_id, primary_status, shadow_status,
		primary_latency_us, shadow_latency_us, match, status_match, content_type_match, body_match,
		shadow_error, shadow_error_kind, compare_note, diff_paths, diff_kinds, received_at_us, ts
		FROM %s.comparisons FINAL WHERE envelope_id = ?`, h.db), envelopeID).Scan(
		&r.Route, &r.Path, &r.Method, &r.TapID, &r.PrimaryStatus, &r.ShadowStatus,
		&r.PrimaryLatency, &r.ShadowLatency, &r.Match, &r.StatusMatch, &r.CTMatch, &r.BMatch,
		&r.ShadowError, &r.ShadowErrorKind, &r.Note, &r.DiffPaths, &r.DiffKinds, &r.ReceivedAtUS, &r.TS)
	if err != nil {
		h.t.Fatalf("row %s: %v", envelopeID, err)
	}
	return r
}

// consumerInfo reads the comparator's durable consumer.
func (h *harness) consumerInfo() *jetstream.ConsumerInfo {
	h.t.Helper()
	c, err := h.js.Consumer(h.ctx, stream.PairsStream, stream.ComparatorConsumer)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := c.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return info
}

// streamMsgs is how many messages a stream holds.
func (h *harness) streamMsgs(name string) uint64 {
	h.t.Helper()
	s, err := h.js.Stream(h.ctx, name)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Msgs
}

func waitReady(t *testing.T, r *running) {
	t.Helper()
	select {
	case <-r.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("comparator not ready within 30s")
	}
}
