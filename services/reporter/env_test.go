package reporter_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

const testDB = "dl_reporter_test"

// env is a running reporter over real NATS, ClickHouse and Redis.
type env struct {
	t     testing.TB
	svc   *reporter.Service
	base  string
	admin string
	// token is an admin token of the reporter's tokens file: do sends it.
	token string
	// log is the reporter's log; nil: the test's (testenv.Logger).
	log   *slog.Logger
	js    *testenv.JetStream
	ch    driver.Conn // a connection of the test's own, for inserting rows
	redis *testenv.Redis
	cfg   reporter.Config // the reporter's, to start another like it
}

type envOptions struct {
	cacheTTL time.Duration
	// controlInterval > 0 runs the ramp controller.
	controlInterval time.Duration
	// quiet discards the reporter's log (a fuzz target may not log to
	// its testing.F).
	quiet bool
	// compactInterval > 0 runs compaction, sealing buckets at once.
	compactInterval time.Duration
	// allowedTargets is REPORTER_ALLOWED_TARGETS.
	allowedTargets string
}

func startEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{t: t, js: testenv.StartJetStream(t)}
	chAddr := testenv.StartClickHouse(t)
	e.redis = testenv.NewRedis(t)
	e.redis.Start()
	cfg := reporter.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", CacheTTL: o.cacheTTL, QueryTimeout: 10 * time.Second,
		ControlInterval: o.controlInterval, LeaseTTL: 10 * o.controlInterval, ID: "test-reporter", AllowedTargets: o.allowedTargets,
		CompactInterval: o.compactInterval, SealAfter: time.Nanosecond}
	cfg.NATSURL = e.js.URL()
	cfg.ClickHouseAddr, cfg.ClickHouseDatabase, cfg.ClickHouseUser = chAddr, testDB, "default"
	cfg.RedisURL = e.redis.URL()
	cfg.TokensFile = writeTokens(t)
	if o.quiet {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.cfg = cfg
	e.svc = e.run(cfg)

	ctx := testenv.Context(t)
	conn, err := analytics.Open(ctx, analytics.Options{Addr: chAddr, Database: testDB, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.ch = conn
	// Ready when every dependency is: the reporter migrated ClickHouse.
	testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		res, body := e.do("GET", "/healthz", nil)
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz %d: %s", res.StatusCode, body)
		}
		return nil
	})
	return e
}

// run starts a reporter with cfg until the test ends, checking that Run
// returns nil on shutdown.
func (e *env) run(cfg reporter.Config) *reporter.Service {
	t := e.t
	t.Helper()
	log := e.log
	if log == nil {
		log = testenv.Logger(t, slog.LevelWarn)
	}
	svc, err := reporter.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + svc.Addr()
	e.admin = "http://" + svc.AdminAddr()
	e.token = testTokens["admin"]
	testenv.Run(t, svc.Run)
	return svc
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// testTokens are the tokens of the tokens file writeTokens writes, by
// scope; the file holds the admin one as its sha256 digest.
var testTokens = map[string]string{
	"admin":   "test-admin-token-5d0c1f0e8a",
	"operate": "test-operate-token-77b2c4a1",
	"read":    "test-read-token-3e9f0a6d25",
}

// writeTokens writes a tokens file holding testTokens (named after their
// scopes: "admin", "operate", "read") and returns its path.
func writeTokens(t testing.TB) string {
	t.Helper()
	sum := sha256.Sum256([]byte(testTokens["admin"]))
	data := fmt.Sprintf("# the reporter tests' tokens\nadmin admin sha256:%x\n\noperate operate %s  # an operator\nread read %s\n",
		sum, testTokens["operate"], testTokens["read"])
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// do sends a request to the API with the admin token (a header given in
// headers replaces it); body is sent as is when it is a string, else as
// JSON. Extra headers come in name, value pairs.
func (e *env) do(method, path string, body any, headers ...string) (*http.Response, []byte) {
	return request(e.t, method, e.base+path, body, append([]string{"Authorization", "Bearer " + e.token}, headers...)...)
}

func request(t testing.TB, method, url string, body any, headers ...string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return res, data
}

// ok sends a request that must answer want and decodes the JSON answer.
func (e *env) ok(want int, method, path string, body, out any) *http.Response {
	e.t.Helper()
	res, data := e.do(method, path, body)
	if res.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, res.StatusCode, want, data)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return res
}

// apiError sends a request that must fail with code and a JSON error whose
// message contains every one of want; it returns the message.
func (e *env) apiError(code int, method, path string, body any, want ...string) string {
	e.t.Helper()
	res, data := e.do(method, path, body)
	return checkError(e.t, res, data, code, want...)
}

func checkError(t testing.TB, res *http.Response, data []byte, code int, want ...string) string {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body %s", res.Request.Method, res.Request.URL.Path, res.StatusCode, code, data)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: error Content-Type %q, want application/json; body %s", res.Request.Method, res.Request.URL.Path, ct, data)
	}
	var e struct {
		Error string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == "" {
		t.Fatalf("%s %s: error body %s is not {\"error\": \"...\"} (%v)", res.Request.Method, res.Request.URL.Path, data, err)
	}
	for _, w := range want {
		if !strings.Contains(e.Error, w) {
			t.Fatalf("%s %s: error %q does not mention %q", res.Request.Method, res.Request.URL.Path, e.Error, w)
		}
	}
	return e.Error
}

func (e *env) create(name string, percent float64) *launch.Launch {
	e.t.Helper()
	var l launch.Launch
	e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{
		"name": name, "service": "checkout", "shadow_url": "http://shadow.internal:8080", "sample_percent": percent,
	}, &l)
	return &l
}

func mustParseRedisURL(t *testing.T, url string) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func jsonUnmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", data, err)
	}
	return nil
}
