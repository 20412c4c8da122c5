package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/seal"
)

func TestUsageListsEverySetting(t *testing.T) {
	var buf bytes.Buffer
	if err := config.Usage(&Config{}, &buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, key := range []string{
		"MIRROR_PRIMARY_URL", "MIRROR_ADDR", "MIRROR_ADMIN_ADDR", "MIRROR_SERVICE", "MIRROR_TAP_ID",
		"MIRROR_BODY_LIMIT", "MIRROR_QUEUE_SIZE", "MIRROR_QUEUE_MAX_BYTES", "MIRROR_PUBLISHERS",
		"MIRROR_MAX_PENDING_ACKS", "MIRROR_ACK_TIMEOUT", "MIRROR_DRAIN_TIMEOUT", "MIRROR_REWRITE_HOST",
		"MIRROR_BATCH_MAX_ENVELOPES", "MIRROR_BATCH_MAX_BYTES", "MIRROR_BATCH_MAX_DELAY", "MIRROR_PUBLISH_RETRY_FOR",
		"MIRROR_X_FORWARDED", "MIRROR_MAX_IDLE_CONNS_PER_HOST", "MIRROR_DIAL_TIMEOUT",
		"MIRROR_RESPONSE_HEADER_TIMEOUT", "MIRROR_IDLE_CONN_TIMEOUT", "MIRROR_READ_HEADER_TIMEOUT",
		"MIRROR_CLIENT_IDLE_TIMEOUT", "MIRROR_SHUTDOWN_TIMEOUT", "NATS_URL", "LOG_LEVEL", "LOG_FORMAT",
	} {
		if !strings.Contains(out, key) {
			t.Errorf("usage lacks %s", key)
		}
	}
	// Every row has a description.
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if len(strings.Fields(line)) < 4 {
			t.Errorf("usage row without a description: %q", line)
		}
	}
	if !strings.Contains(out, "1048576") || !strings.Contains(out, ":8080") {
		t.Errorf("usage lacks defaults:\n%s", out)
	}

	buf.Reset()
	help, err := config.Load("mirror", &Config{}, []string{"-h"}, &buf)
	if !help || err != nil || !strings.Contains(buf.String(), "MIRROR_PRIMARY_URL") {
		t.Errorf("Load -h: help=%v err=%v out=%q", help, err, buf.String())
	}
}

func TestEnvironmentDefaultsMatchGoDefaults(t *testing.T) {
	t.Setenv("MIRROR_PRIMARY_URL", "http://primary:9000")
	t.Setenv("MIRROR_TAP_ID", "tap-1")
	var fromEnv Config
	if _, err := config.Load("mirror", &fromEnv, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	fromGo := Config{PrimaryURL: "http://primary:9000", TapID: "tap-1"}.withDefaults()
	if !reflect.DeepEqual(fromEnv.withDefaults(), fromGo) {
		t.Errorf("environment defaults\n%+v\ndiffer from Go defaults\n%+v", fromEnv, fromGo)
	}
}

// MIRROR_SEAL_HEADERS defaults to the headers pkg/seal (and redaction)
// call sensitive.
func TestSealHeadersDefault(t *testing.T) {
	if got := config.Default[Config]().SealHeaders; !slices.Equal(got, seal.DefaultHeaders) {
		t.Errorf("MIRROR_SEAL_HEADERS default %v, seal.DefaultHeaders %v", got, seal.DefaultHeaders)
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no primary", Config{}},
		{"relative primary", Config{PrimaryURL: "/primary"}},
		{"ftp primary", Config{PrimaryURL: "ftp://primary"}},
		{"primary with query", Config{PrimaryURL: "http://primary/?a=1"}},
		{"negative queue", Config{PrimaryURL: "http://primary", QueueSize: -1}},
		{"negative publishers", Config{PrimaryURL: "http://primary", Publishers: -2}},
		{"negative body limit", Config{PrimaryURL: "http://primary", BodyLimit: -1}},
		{"negative live report interval", Config{PrimaryURL: "http://primary", LiveReportInterval: -time.Second}},
		{"negative body read timeout", Config{PrimaryURL: "http://primary", BodyReadTimeout: -time.Second}},
		{"unknown seal mode", Config{PrimaryURL: "http://primary", Seal: "maybe"}},
		{"seal on without key file", Config{PrimaryURL: "http://primary", Seal: SealOn}},
		{"missing key file", Config{PrimaryURL: "http://primary", SealKeyFile: "/nonexistent/keys"}},
		{"bad trusted proxy", Config{PrimaryURL: "http://primary", TrustedProxies: []string{"10.0.0.0/33"}}},
		{"bad GOGC", Config{PrimaryURL: "http://primary", GOGC: "lots"}},
		{"negative GOGC", Config{PrimaryURL: "http://primary", GOGC: "-5"}},
		{"bad memory limit unit", Config{PrimaryURL: "http://primary", MemoryLimit: "96MB"}},
		{"zero memory limit", Config{PrimaryURL: "http://primary", MemoryLimit: "0"}},
		{"queue over half the memory limit", Config{PrimaryURL: "http://primary", QueueMaxBytes: 49 << 20}},
		{"pprof yes", Config{PrimaryURL: "http://primary", Profiling: config.Profiling{Pprof: "yes"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Addr, tc.cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
			if _, err := New(tc.cfg, nil); !errors.Is(err, ErrConfig) {
				t.Errorf("New: %v, want ErrConfig", err)
			}
		})
	}
}

func TestNewBindsListeners(t *testing.T) {
	s, err := New(Config{PrimaryURL: "http://127.0.0.1:1", Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	defer s.admin.Close()
	if strings.HasSuffix(s.Addr(), ":0") || strings.HasSuffix(s.AdminAddr(), ":0") || s.Addr() == s.AdminAddr() {
		t.Errorf("Addr %s, AdminAddr %s", s.Addr(), s.AdminAddr())
	}
	if _, err := New(Config{PrimaryURL: "http://127.0.0.1:1", Addr: s.Addr(), AdminAddr: "127.0.0.1:0"}, nil); err == nil {
		t.Error("New on a taken address succeeded")
	}
}

func TestFitPayload(t *testing.T) {
	mk := func(req, resp int) *envelope.Envelope {
		return &envelope.Envelope{V: 1, ID: "x", LaunchID: "l", ReceivedAt: time.Now().UTC(),
			Request: envelope.Request{Method: "POST", Path: "/", Body: bytes.Repeat([]byte("q"), req), BodySize: int64(req)},
			Primary: envelope.Response{Status: 200, Body: bytes.Repeat([]byte("r"), resp), BodySize: int64(resp)},
		}
	}
	for _, tc := range []struct {
		name           string
		req, resp, max int
		wantErr        bool
		wantReqCut     bool
		wantRespCut    bool
	}{
		{"fits", 100, 100, 10000, false, false, false},
		{"unknown max", 100000, 100000, 0, false, false, false},
		{"response cut", 10, 100000, 50000, false, false, true},
		{"request cut", 100000, 10, 50000, false, true, false},
		{"both cut", 100000, 100000, 50000, false, true, true},
		{"no room at all", 10, 10, 100, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := mk(tc.req, tc.resp)
			data, _ := json.Marshal(env)
			out, err := fitPayload(env, data, tc.max)
			if tc.wantErr {
				if !errors.Is(err, errTooLarge) {
					t.Fatalf("err %v, want errTooLarge", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.max > 0 && len(out) > tc.max {
				t.Errorf("%d bytes, max %d", len(out), tc.max)
			}
			got, err := envelope.Decode(out)
			if err != nil {
				t.Fatal(err)
			}
			if got.Request.BodyTruncated != tc.wantReqCut || got.Primary.BodyTruncated != tc.wantRespCut {
				t.Errorf("truncated req=%v resp=%v", got.Request.BodyTruncated, got.Primary.BodyTruncated)
			}
			if got.Request.BodySize != int64(tc.req) || got.Primary.BodySize != int64(tc.resp) {
				t.Errorf("sizes %d/%d changed", got.Request.BodySize, got.Primary.BodySize)
			}
			if tc.max > 0 && (tc.wantReqCut || tc.wantRespCut) && len(out) < tc.max*9/10 {
				t.Errorf("cut too much: %d bytes of %d allowed", len(out), tc.max)
			}
		})
	}
}

func TestBufferPoolRecyclesWithoutAllocating(t *testing.T) {
	var p bufferPool
	b := p.Get()
	if len(b) != bufSize {
		t.Fatalf("buffer of %d bytes", len(b))
	}
	p.Put(b)
	p.Put(make([]byte, 10)) // foreign sizes are ignored, not stored
	if n := testing.AllocsPerRun(1000, func() { p.Put(p.Get()) }); n != 0 {
		t.Errorf("%v allocations per Get/Put", n)
	}
}

// The sampling decision runs on every request: it must not allocate,
// whether or not it samples.
func TestSamplingDecisionDoesNotAllocate(t *testing.T) {
	e := newNATSEnv(t)
	s, _ := startMirror(t, e, "http://127.0.0.1:1", nil)
	half := e.createLaunch(t, 50, []string{"GET"}, nil)
	all := e.createLaunch(t, 100, []string{"GET", "POST"}, nil)
	waitMirrored(t, s, half.ID, all.ID)
	sample := func(method string) ([]*launch.Launch, uint64) {
		rt := s.routes.Load()
		return rt.launches, rt.sample(httptest.NewRequest(method, "/x", nil), "/x", s.stats)
	}
	for _, method := range []string{"GET", "POST", "DELETE"} {
		r := httptest.NewRequest(method, "/x", nil)
		if n := testing.AllocsPerRun(1000, func() { s.routes.Load().sample(r, "/x", s.stats) }); n != 0 {
			t.Errorf("sample(%s): %v allocations", method, n)
		}
	}
	var sampledHalf, sampledAll int
	for range 2000 {
		ls, mask := sample("GET")
		for i, l := range ls {
			if mask&(1<<i) != 0 {
				switch l.ID {
				case half.ID:
					sampledHalf++
				case all.ID:
					sampledAll++
				}
			}
		}
	}
	if sampledAll != 2000 || sampledHalf < 800 || sampledHalf > 1200 {
		t.Errorf("sampled %d of 2000 at 100%%, %d at 50%%", sampledAll, sampledHalf)
	}
	if _, mask := sample("DELETE"); mask != 0 {
		t.Error("DELETE sampled")
	}
}

// newBareService is enough of a Service to finish taps.
func newBareService() *Service {
	s := &Service{cfg: Config{BodyLimit: 1 << 10, QueueSize: 10, QueueMaxBytes: 1 << 30, TapID: "t"}, queue: make(chan queued, 10)}
	s.registerMetrics(prometheus.NewRegistry())
	return s
}

// The transport may still read the request body when the handler returns:
// the tap is finished exactly once, after both, with no data race (run
// with -race).
func TestRequestTeeFinishesOnceAfterReaderAndHandler(t *testing.T) {
	for i := range 200 {
		s := newBareService()
		body := bytes.Repeat([]byte("b"), 4096)
		tp := &tap{s: s, mask: 1, launches: []*launch.Launch{{ID: "l1"}}, ctx: context.Background(),
			hasBody: true, contentLength: int64(len(body)), request: envelope.Request{Method: "POST", Path: "/"}}
		tp.resp.eof = true
		tp.reason = reasonNone
		tp.req = reqTee{rc: io.NopCloser(iotest.HalfReader(bytes.NewReader(body))), t: tp, cap: envelope.Capture{Limit: 1 << 10}}
		tp.parts.Store(2)

		var wg sync.WaitGroup
		wg.Go(func() {
			buf := make([]byte, 100)
			for {
				if _, err := tp.req.Read(buf); err != nil {
					return
				}
			}
		})
		if i%2 == 0 {
			time.Sleep(time.Duration(i%7) * 10 * time.Microsecond)
		}
		tp.req.seal()
		tp.release()
		wg.Wait()
		if n := len(s.queue); n != 1 {
			t.Fatalf("run %d: %d envelopes queued, want exactly 1", i, n)
		}
		env := (<-s.queue).env
		// Whether the reader got to the end or not, the full size is known
		// (from Content-Length) and the capture respects the limit.
		r := env.Request
		if r.BodySize != int64(len(body)) || !r.BodyTruncated || len(r.Body) > 1<<10 {
			t.Fatalf("run %d: size %d truncated %v captured %d", i, r.BodySize, r.BodyTruncated, len(r.Body))
		}
	}
}

func TestQueueByteBudget(t *testing.T) {
	s := newBareService()
	s.cfg.QueueMaxBytes = 3000
	big := &envelope.Envelope{Primary: envelope.Response{Body: make([]byte, 2000)}}
	s.enqueue(big, nil)
	s.enqueue(big, nil) // 2 × 2512 > 3000
	if len(s.queue) != 1 || s.Stats().Dropped[ReasonQueueFull] != 1 {
		t.Errorf("queue %d, stats %+v", len(s.queue), s.Stats())
	}
	s.dropQueued()
	if s.queueBytes.Load() != 0 || s.Stats().Dropped[ReasonShutdown] != 1 {
		t.Errorf("queue bytes %d, stats %+v", s.queueBytes.Load(), s.Stats())
	}
}

// A request that is not sampled costs fewer allocations than the plain
// proxy (ReverseProxy with the tap's Rewrite): the tap adds nothing but
// atomic loads on that path, and the direct path copies neither the
// request nor its headers.
func TestUnsampledRequestAllocatesLessThanThePlainProxy(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := startMirror(t, e, primary.URL, nil)
	zero := e.createLaunch(t, 0, nil, nil)
	other := e.createLaunch(t, 100, []string{"POST"}, nil) // mirrored, but not for GET
	waitKnown(t, s, zero.ID)
	waitMirrored(t, s, other.ID)
	serve := func(h http.Handler) func() {
		return func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/small", nil))
			if w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
		}
	}
	serve(s.plain)() // warm the connection pool
	plain := testing.AllocsPerRun(500, serve(s.plain))
	tapped := testing.AllocsPerRun(500, serve(s))
	t.Logf("allocations per request: plain proxy %.1f, tap %.1f", plain, tapped)
	if tapped >= plain {
		t.Errorf("unsampled request through the tap: %.1f allocations, plain proxy %.1f", tapped, plain)
	}
	if st := s.Stats(); st.Sampled != 0 {
		t.Errorf("sampled %d", st.Sampled)
	}
}

func TestRuntimeSettings(t *testing.T) {
	for _, tc := range []struct {
		gogc, limit string
		wantGC      int
		wantLimit   int64
	}{
		{"400", "96MiB", 400, 96 << 20},
		{"off", "off", -1, 0},
		{"0", "123456", 0, 123456},
		{"100", "2GiB", 100, 2 << 30},
		{"50", "512KiB", 50, 512 << 10},
		{"50", "1000B", 50, 1000},
	} {
		c := Config{GOGC: tc.gogc, MemoryLimit: tc.limit}
		gc, limit, err := c.runtimeSettings()
		if err != nil || gc != tc.wantGC || limit != tc.wantLimit {
			t.Errorf("%q %q: %d %d %v, want %d %d", tc.gogc, tc.limit, gc, limit, err, tc.wantGC, tc.wantLimit)
		}
	}
	// The defaults fit together: the queue's byte budget is within half the limit.
	c := Config{PrimaryURL: "http://primary"}.withDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestPprofOnTheAdminPort(t *testing.T) {
	for _, mode := range []string{"on", "off"} {
		s, err := New(Config{PrimaryURL: "http://127.0.0.1:1", Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Profiling: config.Profiling{Pprof: mode}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.ln.Close()
		s.admin.Close()
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/cmdline"} {
			w := httptest.NewRecorder()
			s.admin.Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
			if want := map[string]int{"on": 200, "off": 404}[mode]; w.Code != want {
				t.Errorf("PPROF=%s: GET %s answered %d, want %d", mode, path, w.Code, want)
			}
		}
	}
}

// NewProcess applies MIRROR_GOGC and MIRROR_MEMORY_LIMIT to the process,
// unless GOGC or GOMEMLIMIT is set in the environment; New does not.
func TestNewProcessSetsTheRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	cfg := Config{PrimaryURL: "http://127.0.0.1:1", Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", GOGC: "250", MemoryLimit: "64MiB"}
	build := func(f func(Config, *slog.Logger) (*Service, error)) *Service {
		t.Helper()
		s, err := f(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.ln.Close()
		s.admin.Close()
		return s
	}
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	if s := build(New); s.returnMemory || debug.SetGCPercent(100) != 100 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatal("New changed the runtime")
	}
	s := build(NewProcess)
	if gc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64); gc != 250 || limit != 64<<20 || !s.returnMemory {
		t.Errorf("NewProcess: GOGC %d, limit %d, returnMemory %v; want 250, %d, true", gc, limit, s.returnMemory, 64<<20)
	}
	t.Setenv("GOGC", "123")
	t.Setenv("GOMEMLIMIT", "1GiB")
	build(NewProcess)
	if gc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1); gc != 100 || limit != math.MaxInt64 {
		t.Errorf("with GOGC and GOMEMLIMIT set, NewProcess changed them: %d, %d", gc, limit)
	}
}
