package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/admin"
)

var adminClient = &http.Client{Timeout: 10 * time.Second}

// Health fetches /healthz from a service's admin address (host:port) and
// returns the status code and the decoded report.
func Health(t testing.TB, addr string) (int, admin.HealthReport) {
	t.Helper()
	code, body := adminGet(t, addr, "/healthz")
	var rep admin.HealthReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("/healthz body %q: %v", body, err)
	}
	return code, rep
}

// Metrics fetches /metrics from a service's admin address (host:port).
func Metrics(t testing.TB, addr string) string {
	t.Helper()
	code, body := adminGet(t, addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", code, body)
	}
	return string(body)
}

func adminGet(t testing.TB, addr, path string) (int, []byte) {
	t.Helper()
	resp, err := adminClient.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp.StatusCode, body
}

// WantMetrics fetches /metrics from a service's admin address and fails
// the test (without stopping it) for each line that is not in it, naming
// the line. A line may be a whole sample ("name{labels} value") or a prefix
// of one.
func WantMetrics(t testing.TB, addr string, lines ...string) {
	t.Helper()
	body := Metrics(t, addr)
	for _, line := range lines {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics on %s lacks %q", addr, line)
		}
	}
}
