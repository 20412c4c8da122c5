// Package e2e runs the whole pipeline in one process against real servers:
// an embedded NATS JetStream server, a private ClickHouse server and a
// private Redis server (pkg/testenv), the four darklaunch services started
// through their public New/Run, and the demo primary, secondary and shadow.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/deploy/demo"
	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/comparator"
	"github.com/darklaunch/darklaunch/services/mirror"
	"github.com/darklaunch/darklaunch/services/reporter"
	runner "github.com/darklaunch/darklaunch/services/shadow-runner"
)

// stack is one running pipeline.
type stack struct {
	t             *testing.T
	nats          *testenv.JetStream // nil on a cluster (withNATS)
	chServer      *testenv.ClickHouse
	redisServer   *testenv.Redis
	ch            driver.Conn
	primary       *httptest.Server
	shadow        *httptest.Server
	shadowHits    atomic.Int64
	secondary     *httptest.Server // a second instance of the primary's version
	secondaryHits atomic.Int64
	mirror        *mirror.Service
	runner        *runner.Service
	comparator    *comparator.Service
	reporter      *reporter.Service
	client        *http.Client
	// token is an admin token of the reporter's tokens file; api sends it.
	token string
	// sealKeys is the key file mirror and runner share.
	sealKeys string
}

// load fills a service's Config the way its main does: from environment
// variables, through envconfig (so defaults apply as in production).
func load[T any](t *testing.T, env map[string]string) T {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var cfg T
	if _, err := config.Load("e2e", &cfg, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func logger(name string) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("E2E_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", name)
}

// stackOptions change the stack a test runs.
type stackOptions struct {
	// wrapShadow, when set, wraps the demo shadow's handler.
	wrapShadow func(http.Handler) http.Handler
	// wrapPrimary, when set, wraps the demo primary's handler.
	wrapPrimary func(http.Handler) http.Handler
	// wrapSecondary, when set, wraps the demo secondary's handler.
	wrapSecondary func(http.Handler) http.Handler
	// serviceTime, when set, is the least time every answer of the
	// primary, the shadow and the secondary takes.
	serviceTime time.Duration
	// natsURL and natsReplicas, when set, are the NATS servers (a
	// cluster) and the replicas of the streams, instead of one embedded
	// server.
	natsURL      string
	natsReplicas int
}

type stackOption func(*stackOptions)

// withNATS runs the services on the NATS servers of url (a cluster's
// list) with streams and buckets of the given replicas.
func withNATS(url string, replicas int) stackOption {
	return func(o *stackOptions) { o.natsURL, o.natsReplicas = url, replicas }
}

// wrapShadow makes the shadow answer through wrap(demo shadow).
func wrapShadow(wrap func(http.Handler) http.Handler) stackOption {
	return func(o *stackOptions) { o.wrapShadow = wrap }
}

// wrapPrimary makes the primary answer through wrap(demo primary).
func wrapPrimary(wrap func(http.Handler) http.Handler) stackOption {
	return func(o *stackOptions) { o.wrapPrimary = wrap }
}

// wrapSecondary makes the secondary answer through wrap(demo secondary).
func wrapSecondary(wrap func(http.Handler) http.Handler) stackOption {
	return func(o *stackOptions) { o.wrapSecondary = wrap }
}

// withServiceTime makes every version take at least d per answer, as a
// real service does. Tests that judge latency gates on identical versions
// use it: on bare loopback an answer takes a few hundred microseconds, so
// one scheduling hiccup on a loaded machine moves a quantile ratio past any
// bound; with a service time that dominates the noise, identical versions
// stay near a ratio of 1 and only a real regression moves it.
func withServiceTime(d time.Duration) stackOption {
	return func(o *stackOptions) { o.serviceTime = d }
}

// The slow route's injected delays: the shadow answers /api/search
// slowFactor times later than the primary, a gap of searchDelay x
// (slowFactor-1) that dominates this shared machine's noise (-race, 2 cores,
// other tests beside).
const (
	searchDelay = 4 * time.Millisecond
	slowFactor  = 10
)

func startStack(t *testing.T, options ...stackOption) *stack {
	t.Helper()
	var o stackOptions
	for _, opt := range options {
		opt(&o)
	}
	s := &stack{t: t, client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	natsURL := o.natsURL
	if natsURL == "" {
		s.nats = testenv.StartJetStream(t)
		natsURL = s.nats.URL()
	}
	s.chServer, s.redisServer = testenv.NewClickHouse(t), testenv.NewRedis(t)
	s.chServer.Start()
	s.redisServer.Start()
	chAddr, redisURL := s.chServer.Addr(), s.redisServer.URL()

	opts := demo.Options{SearchDelay: searchDelay, SlowFactor: slowFactor}
	ph, _ := demo.Handler(demo.Primary, opts)
	sh, _ := demo.Handler(demo.Shadow, opts)
	sech, _ := demo.Handler(demo.Secondary, opts)
	if o.wrapShadow != nil {
		sh = o.wrapShadow(sh)
	}
	if o.wrapPrimary != nil {
		ph = o.wrapPrimary(ph)
	}
	if o.wrapSecondary != nil {
		sech = o.wrapSecondary(sech)
	}
	if o.serviceTime > 0 {
		ph, sh, sech = takeAtLeast(o.serviceTime, ph), takeAtLeast(o.serviceTime, sh), takeAtLeast(o.serviceTime, sech)
	}
	s.primary = httptest.NewServer(ph)
	s.shadow = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.shadowHits.Add(1)
		sh.ServeHTTP(w, r)
	}))
	s.secondary = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.secondaryHits.Add(1)
		sech.ServeHTTP(w, r)
	}))
	t.Cleanup(s.primary.Close)
	t.Cleanup(s.shadow.Close)
	t.Cleanup(s.secondary.Close)

	common := map[string]string{
		"NATS_URL": natsURL, "CLICKHOUSE_ADDR": chAddr, "CLICKHOUSE_DATABASE": "darklaunch", "REDIS_URL": redisURL,
		"NATS_REPLICAS": strconv.Itoa(max(o.natsReplicas, 1)),
	}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range common {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	s.sealKeys, _ = testenv.SealKeys(t, "e2e")
	var err error
	s.mirror, err = mirror.New(load[mirror.Config](t, with(map[string]string{
		"MIRROR_ADDR": "127.0.0.1:0", "MIRROR_ADMIN_ADDR": "127.0.0.1:0", "MIRROR_PRIMARY_URL": s.primary.URL,
		// Live snapshots often enough for live steps of a second.
		"MIRROR_LIVE_REPORT_INTERVAL": "200ms",
		"MIRROR_SEAL_KEY_FILE":        s.sealKeys,
	})), logger("mirror"))
	if err != nil {
		t.Fatal(err)
	}
	s.runner, err = runner.New(load[runner.Config](t, with(map[string]string{
		"RUNNER_ADMIN_ADDR": "127.0.0.1:0", "RUNNER_TIMEOUT": "2s", "RUNNER_SEAL_KEY_FILE": s.sealKeys,
	})), logger("shadow-runner"))
	if err != nil {
		t.Fatal(err)
	}
	s.comparator, err = comparator.New(load[comparator.Config](t, with(map[string]string{
		"COMPARATOR_ADMIN_ADDR": "127.0.0.1:0", "COMPARATOR_FLUSH_INTERVAL": "200ms",
	})), logger("comparator"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = rand.Text()
	s.reporter, err = reporter.New(load[reporter.Config](t, with(map[string]string{
		"REPORTER_ADDR": "127.0.0.1:0", "REPORTER_ADMIN_ADDR": "127.0.0.1:0", "REPORTER_CACHE_TTL": "0s",
		"REPORTER_TOKENS_FILE": writeFile(t, "tokens", fmt.Sprintf("e2e admin sha256:%x\n", sha256.Sum256([]byte(s.token)))),
		// A quick controller, so ramps with holds of a second move in a test.
		"REPORTER_CONTROL_INTERVAL": "200ms", "REPORTER_LEASE_TTL": "2s",
	})), logger("reporter"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for name, run := range map[string]func(context.Context) error{
		"mirror": s.mirror.Run, "shadow-runner": s.runner.Run, "comparator": s.comparator.Run, "reporter": s.reporter.Run,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Errorf("%s.Run: %v", name, err)
			}
		}()
	}
	// Services stop (and flush) before the servers under them go away:
	// cleanups run last-registered first.
	t.Cleanup(func() { cancel(); wg.Wait() })

	s.ch, err = analytics.Open(context.Background(), analytics.Options{Addr: chAddr, Database: "darklaunch", User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ch.Close() })
	testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		code, body := s.api("GET", "/healthz", nil)
		if code != 200 {
			return fmt.Errorf("reporter healthz %d: %s", code, body)
		}
		return nil
	})
	return s
}

// do sends one request to a service's address, with body as JSON when it
// is not nil and extra headers as name, value pairs, and returns status,
// headers and body.
func (s *stack) do(addr, method, path string, body []byte, headers ...string) (int, http.Header, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s%s: %v", method, addr, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s%s: reading body: %v", method, addr, path, err)
	}
	return resp.StatusCode, resp.Header, data
}

// api calls the reporter and returns the status and body.
func (s *stack) api(method, path string, body any) (int, []byte) {
	s.t.Helper()
	var data []byte
	if body != nil {
		data = mustJSON(s.t, body)
	}
	code, _, out := s.do(s.reporter.Addr(), method, path, data, "Authorization", "Bearer "+s.token)
	return code, out
}

// writeFile writes a file of the test's own and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiOK calls the reporter, requires the status, and decodes the body.
func (s *stack) apiOK(method, path string, body any, want int, out any) {
	s.t.Helper()
	code, data := s.api(method, path, body)
	if code != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

func (s *stack) createLaunch(shadowURL string, percent float64, methods ...string) launch.Launch {
	s.t.Helper()
	return s.createLaunchWith(map[string]any{"shadow_url": shadowURL, "sample_percent": percent, "methods": methods})
}

// createLaunchWith creates a launch of the default service named after the
// test, with fields as given.
func (s *stack) createLaunchWith(fields map[string]any) launch.Launch {
	s.t.Helper()
	body := map[string]any{"name": s.t.Name(), "service": "default"}
	for k, v := range fields {
		body[k] = v
	}
	var l launch.Launch
	s.apiOK("POST", "/v1/launches", body, http.StatusCreated, &l)
	if l.ID == "" || l.Status != "active" {
		s.t.Fatalf("created launch %+v", l)
	}
	return l
}

func (s *stack) report(id string) api.Report {
	s.t.Helper()
	var r api.Report
	s.apiOK("GET", "/v1/launches/"+id+"/report", nil, http.StatusOK, &r)
	return r
}

// send makes one request through the mirror and returns status, headers
// and body.
func (s *stack) send(method, path string, body []byte) (int, http.Header, []byte) {
	s.t.Helper()
	return s.do(s.mirror.Addr(), method, path, body)
}

// waitMirrorSees sends probe requests until the mirror samples one, i.e.
// until its KV watch has seen a launch; it returns how many it sent.
func (s *stack) waitMirrorSees() uint64 {
	s.t.Helper()
	start := s.mirror.Stats().Sampled
	testenv.CheckFor(s.t, 10*time.Second, 10*time.Millisecond, func() error {
		s.send("GET", "/api/users/1", nil)
		if s.mirror.Stats().Sampled == start {
			return fmt.Errorf("the mirror has not picked up the launch")
		}
		return nil
	})
	return s.mirror.Stats().Sampled - start
}

// rows counts a launch's rows in ClickHouse, duplicates collapsed.
func (s *stack) rows(launchID, where string) uint64 {
	s.t.Helper()
	if where == "" {
		where = "1"
	}
	var n uint64
	q := "SELECT count() FROM darklaunch.comparisons FINAL WHERE launch_id = ? AND " + where
	if err := s.ch.QueryRow(context.Background(), q, launchID).Scan(&n); err != nil {
		s.t.Fatalf("count rows: %v", err)
	}
	return n
}

// waitRows waits until a launch has exactly want rows.
func (s *stack) waitRows(launchID string, want uint64) {
	s.t.Helper()
	testenv.CheckFor(s.t, 60*time.Second, 100*time.Millisecond, func() error {
		if n := s.rows(launchID, ""); n != want {
			return fmt.Errorf("launch %s has %d rows, want %d (mirror %+v, runner %+v, comparator %+v)",
				launchID, n, want, s.mirror.Stats(), s.runner.Stats(), s.comparator.Stats())
		}
		return nil
	})
}

// drained waits until the mirror has published or dropped all it sampled.
func (s *stack) drained() mirror.Stats {
	s.t.Helper()
	var st mirror.Stats
	testenv.CheckFor(s.t, 20*time.Second, 20*time.Millisecond, func() error {
		st = s.mirror.Stats()
		if st.Sampled != st.Published+st.DroppedTotal() {
			return fmt.Errorf("mirror not drained: %+v", st)
		}
		return nil
	})
	return st
}

// takeAtLeast delays h's answers so that each takes at least d.
func takeAtLeast(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d)
		h.ServeHTTP(w, r)
	})
}
