// Package testenv starts the real servers integration tests need, on free
// ports with temporary data: an embedded NATS JetStream server, and private
// ClickHouse and Redis server processes. A missing server binary fails the
// test with a message naming `make deps`; it never skips.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// JetStream is an embedded NATS server with JetStream that a test can stop
// and start again on the same port and storage.
type JetStream struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

// StartJetStream starts an embedded JetStream server on a free port with
// t.TempDir() storage; it is shut down when the test ends. configure, if
// any, change its options before it starts (TLS, authentication).
func StartJetStream(t testing.TB, configure ...func(*server.Options)) *JetStream {
	t.Helper()
	js := &JetStream{t: t, opts: server.Options{
		Host:      "127.0.0.1",
		Port:      FreePort(t),
		JetStream: true,
		StoreDir:  t.TempDir(),
		// The streams reserve their MaxBytes (10 GiB each); by default
		// JetStream may reserve 75% of the disk's free space, so on a
		// machine with less than about 43 GB free they would not be
		// created. Tests store little: claim more than is there.
		JetStreamMaxStore:  1 << 40,
		JetStreamMaxMemory: 1 << 30,
		NoLog:              true,
		NoSigs:             true,
	}}
	for _, c := range configure {
		c(&js.opts)
	}
	js.Start()
	t.Cleanup(js.Stop)
	return js
}

// URL is the client URL of the server.
func (j *JetStream) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", j.opts.Port) }

// StoreDir is the directory the server keeps its streams in.
func (j *JetStream) StoreDir() string { return j.opts.StoreDir }

// Start starts the server (again, after Stop) on the same port and storage.
func (j *JetStream) Start() {
	j.t.Helper()
	opts := j.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		j.t.Fatalf("embedded NATS: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		j.t.Fatalf("embedded NATS did not start on port %d", j.opts.Port)
	}
	j.srv = srv
}

// Stop shuts the server down; clients see a disconnect.
func (j *JetStream) Stop() {
	if j.srv != nil {
		j.srv.Shutdown()
		j.srv.WaitForShutdown()
		j.srv = nil
	}
}

// FreePort returns a TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lookBinary finds a server binary or fails the test naming `make deps`.
func lookBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		// Debian puts some servers in /usr/sbin, which a non-root PATH lacks.
		if _, serr := os.Stat("/usr/sbin/" + name); serr == nil {
			return "/usr/sbin/" + name
		}
		t.Fatalf("%s is not installed (not in PATH): run `make deps` to install the servers integration tests need", name)
	}
	return p
}

// process is a server process a test can stop (killed, as in a crash) and
// start again with the same arguments, port and data directory. Its output
// goes to a log file in dir that is printed if the test fails.
type process struct {
	t     testing.TB
	name  string // the binary's name, for messages
	bin   string
	args  []string
	dir   string
	addr  string        // where it accepts connections once started
	ready time.Duration // how long it may take to accept them

	mu  sync.Mutex
	cmd *exec.Cmd
	log *os.File
}

func newProcess(t testing.TB, name, dir, addr string, ready time.Duration, args ...string) *process {
	t.Helper()
	p := &process{t: t, name: name, bin: lookBinary(t, name), args: args, dir: dir, addr: addr, ready: ready}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(p.logPath()); err == nil && len(b) > 0 {
				t.Logf("%s log (last 2000 bytes):\n%s", name, tail(b, 2000))
			}
		}
	})
	return p
}

func (p *process) logPath() string { return filepath.Join(p.dir, "server.log") }

// Start runs the server and waits until it accepts connections.
func (p *process) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.t.Fatalf("%s is already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd, p.log = cmd, logf
	waitTCP(p.t, p.name, p.addr, p.ready)
}

// PID is the running server's process id (0 when it is stopped), for a
// benchmark that reads its CPU time.
func (p *process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop kills the server at once, as a crash would; it does nothing when
// the server is not running.
func (p *process) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.log.Close()
	p.cmd, p.log = nil, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// waitTCP waits until addr accepts connections.
func waitTCP(t testing.TB, what, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept connections on %s within %s: %v", what, addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Redis is a private redis-server with no persistence that a test can stop
// and start again on the same port (empty again: nothing is saved).
type Redis struct{ *process }

// NewRedis prepares a redis-server on a free port without starting it;
// Start starts it. It is stopped when the test ends.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	dir := t.TempDir()
	port := FreePort(t)
	return &Redis{newProcess(t, "redis-server", dir, fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)}
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return r.addr }

// URL is the server's redis:// URL, database 0.
func (r *Redis) URL() string { return "redis://" + r.addr + "/0" }

// StartRedisTLS starts a private redis-server that accepts TLS only, with
// the server certificate of files (client certificates are optional), and
// returns its rediss:// URL.
func StartRedisTLS(t testing.TB, files *TLSFiles) string {
	t.Helper()
	dir := t.TempDir()
	port := FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	r := &Redis{newProcess(t, "redis-server", dir, addr, 10*time.Second,
		"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--tls-cert-file", files.ServerCert, "--tls-key-file", files.ServerKey, "--tls-ca-cert-file", files.CA,
		"--tls-auth-clients", "optional")}
	r.Start()
	return "rediss://" + addr + "/0"
}

// StartRedis starts a private redis-server with no persistence and returns
// its URL.
func StartRedis(t testing.TB) string {
	t.Helper()
	r := NewRedis(t)
	r.Start()
	return r.URL()
}

// ClickHouse is a private clickhouse-server with data in a temp dir that a
// test can stop and start again on the same ports and data.
type ClickHouse struct{ *process }

// NewClickHouse prepares a clickhouse-server on free ports without
// starting it; Start starts it. It is stopped when the test ends.
func NewClickHouse(t testing.TB) *ClickHouse {
	t.Helper()
	return newClickHouse(t, "")
}

// StartClickHouseTLS starts a private clickhouse-server that also accepts
// TLS on a secure native port, with the server certificate of files, and
// returns that port's address.
func StartClickHouseTLS(t testing.TB, files *TLSFiles) string {
	t.Helper()
	secure := FreePort(t)
	c := newClickHouse(t, fmt.Sprintf(`<tcp_port_secure>%d</tcp_port_secure>
  <openSSL><server><certificateFile>%s</certificateFile><privateKeyFile>%s</privateKeyFile>
    <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>
    <disableProtocols>sslv2,sslv3</disableProtocols></server></openSSL>`, secure, files.ServerCert, files.ServerKey))
	c.Start()
	addr := fmt.Sprintf("127.0.0.1:%d", secure)
	// Start waits for the plain port; the secure one may open a moment
	// later (seen under load), so wait for it too before a test dials it.
	CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return fmt.Errorf("clickhouse secure port: %w", err)
		}
		return conn.Close()
	})
	return addr
}

// newClickHouse is NewClickHouse with extra elements in its config.xml.
func newClickHouse(t testing.TB, extra string) *ClickHouse {
	t.Helper()
	return newClickHouseOn(t, FreePort(t), extra)
}

// newClickHouseOn is newClickHouse on the native port tcp.
func newClickHouseOn(t testing.TB, tcp int, extra string) *ClickHouse {
	t.Helper()
	dir := t.TempDir()
	http := FreePort(t)
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
  %[4]s
</yandex>
`, tcp, http, dir, extra)
	for name, body := range map[string]string{"config.xml": config, "users.xml": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &ClickHouse{newProcess(t, "clickhouse-server", dir, fmt.Sprintf("127.0.0.1:%d", tcp), 30*time.Second,
		"--config-file="+filepath.Join(dir, "config.xml"))}
}

// Addr is the server's native protocol address.
func (c *ClickHouse) Addr() string { return c.addr }

// StartClickHouse starts a private clickhouse-server with data in a temp
// dir and returns its native protocol address.
func StartClickHouse(t testing.TB) string {
	t.Helper()
	c := NewClickHouse(t)
	c.Start()
	return c.Addr()
}

// CheckFor polls f every interval until it returns nil or timeout passes,
// then fails the test with f's last error.
func CheckFor(t testing.TB, timeout, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

// Context returns a context cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// Env returns os.Environ plus kv pairs, for starting service processes.
func Env(kv ...string) []string {
	out := os.Environ()
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, strings.ToUpper(kv[i])+"="+kv[i+1])
	}
	return out
}

// NATSServerArgs are the arguments that run the nats-server binary with
// JetStream on 127.0.0.1:port, its store in dir, from a config file
// written there: like StartJetStream's, it lets the streams reserve more
// than the disk's free space (the command line has no flag for that).
func NATSServerArgs(t testing.TB, dir string, port int) []string {
	t.Helper()
	conf := filepath.Join(dir, "nats-server.conf")
	text := fmt.Sprintf("listen: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}\n",
		port, filepath.Join(dir, "jetstream"))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-c", conf}
}
