package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestHealthAndMetrics(t *testing.T) {
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.AddCheck("nats", func(context.Context) error { return nil })
	down := errors.New("dial tcp: connection refused")
	var redisErr error
	s.AddCheck("redis", func(context.Context) error { return redisErr })
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
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
