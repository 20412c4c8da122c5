package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthAndMetrics(t *testing.T) {
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.AddCheck("nats", func(context.Context) error { return nil })
	down := errors.New("dial tcp: connection refused")
	var redisErr error
	s.AddCheck("redis", func(context.Context) error { return redisErr })
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthy: %d %s", code, body)
	}
	redisErr = down
	code, body := get("/healthz")
	var rep HealthReport
	_ = json.Unmarshal([]byte(body), &rep)
	if code != 503 || rep.Status != "degraded" || rep.Checks["redis"] != down.Error() || rep.Checks["nats"] != "ok" {
		t.Fatalf("degraded: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics: %d", code)
	}
}

// Serve is the admin lifecycle every service runs: Listen in New (the port
// is known and a busy one fails construction), Serve in Run until the
// context ends, extra routes beside /healthz and /metrics.
func TestListenServeShutdown(t *testing.T) {
	s := New(slog.New(slog.DiscardHandler))
	s.Handle("GET /livez", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }))
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if busy := New(slog.New(slog.DiscardHandler)); busy.Listen(s.Addr()) == nil {
		t.Fatal("Listen on a busy port succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	for _, path := range []string{"/livez", "/healthz", "/metrics"} {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s answered %d", path, resp.StatusCode)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve returned %v after its context ended", err)
	}
	if _, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		t.Fatal("the admin port still answers after Serve returned")
	}
	if err := New(slog.New(slog.DiscardHandler)).Serve(context.Background()); err == nil {
		t.Fatal("Serve without Listen returned nil")
	}
}

func TestHandleProfiles(t *testing.T) {
	for _, on := range []bool{true, false} {
		s := New(slog.New(slog.DiscardHandler))
		if on {
			s.HandleProfiles()
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
			if want := map[bool]int{true: 200, false: 404}[on]; w.Code != want {
				t.Errorf("profiles %v: GET %s answered %d, want %d", on, path, w.Code, want)
			}
		}
	}
}

func TestReadyIgnoresOptionalChecks(t *testing.T) {
	s := New(slog.New(slog.DiscardHandler))
	var natsErr, cacheErr error
	s.AddCheck("nats", func(context.Context) error { return natsErr })
	s.AddOptionalCheck("cache", func(context.Context) error { return cacheErr })
	get := func(path string) (int, HealthReport) {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		var rep HealthReport
		if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
			t.Fatalf("%s: %v: %s", path, err, w.Body)
		}
		return w.Code, rep
	}
	for _, tc := range []struct {
		nats, cache       error
		healthz, readyz   int
		status, cacheText string
	}{
		{nil, nil, 200, 200, "ok", "ok"},
		{nil, errors.New("cache down"), 503, 200, "degraded", "cache down"},
		{errors.New("nats down"), nil, 503, 503, "degraded", "ok"},
		{errors.New("nats down"), errors.New("cache down"), 503, 503, "degraded", "cache down"},
	} {
		natsErr, cacheErr = tc.nats, tc.cache
		for path, want := range map[string]int{"/healthz": tc.healthz, "/readyz": tc.readyz} {
			code, rep := get(path)
			if code != want || rep.Status != tc.status || rep.Checks["cache"] != tc.cacheText {
				t.Errorf("nats %v, cache %v: %s answered %d %+v; want %d, status %s", tc.nats, tc.cache, path, code, rep, want, tc.status)
			}
		}
	}
}
