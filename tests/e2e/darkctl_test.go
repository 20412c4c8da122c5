package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// darkctl runs the real binary against the stack's reporter.
type darkctl struct {
	t     *testing.T
	bin   string
	url   string
	token string // DARKLAUNCH_TOKEN
}

func buildDarkctl(t *testing.T, s *stack) *darkctl {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "darkctl")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/darklaunch/darklaunch/cmd/darkctl").CombinedOutput()
	if err != nil {
		t.Fatalf("build darkctl: %v\n%s", err, out)
	}
	return &darkctl{t: t, bin: bin, url: "http://" + s.reporter.Addr(), token: s.token}
}

// run returns stdout, stderr and the exit code.
func (d *darkctl) run(args ...string) (string, string, int) {
	d.t.Helper()
	cmd := exec.Command(d.bin, append([]string{"-reporter", d.url}, args...)...)
	cmd.Env = append(os.Environ(), "DARKLAUNCH_TOKEN="+d.token)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestDarkctl(t *testing.T) {
	s := startStack(t)
	d := buildDarkctl(t, s)

	out, errOut, code := d.run("-json", "create", "-name", "cli", "-shadow", s.shadow.URL, "-percent", "10")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	var l launch.Launch
	if err := json.Unmarshal([]byte(out), &l); err != nil || l.ID == "" || l.SamplePercent != 10 {
		t.Fatalf("create printed %q (%v)", out, err)
	}
	if out, _, code := d.run("list"); code != 0 || !strings.Contains(out, l.ID) || !strings.Contains(out, "active") {
		t.Fatalf("list: exit %d:\n%s", code, out)
	}
	if out, _, code := d.run("percent", l.ID, "50"); code != 0 || !strings.Contains(out, "50") {
		t.Fatalf("percent: exit %d:\n%s", code, out)
	}
	for action, status := range map[string]string{"pause": "paused", "resume": "active"} {
		if out, errOut, code := d.run(action, l.ID, "-reason", "cli test"); code != 0 || !strings.Contains(out, status) {
			t.Fatalf("%s: exit %d: %s %s", action, code, out, errOut)
		}
	}
	if out, errOut, code := d.run("report", l.ID); code != 0 || !strings.Contains(out, "Compared 0 pairs") {
		t.Fatalf("report: exit %d:\n%s%s", code, out, errOut)
	}
	if out, errOut, code := d.run("rollback", l.ID); code != 0 || !strings.Contains(out, "rolled_back") {
		t.Fatalf("rollback: exit %d: %s %s", code, out, errOut)
	}
	// Verdict exit codes: inconclusive without data, pass on a clean
	// shadow, fail on a failing one.
	if out, errOut, code := d.run("verdict", l.ID); code != 2 || !strings.Contains(out, "inconclusive") {
		t.Fatalf("verdict without traffic: exit %d: %s %s", code, out, errOut)
	}
	if _, _, code := d.run("wait", l.ID, "-timeout", "300ms", "-interval", "100ms"); code != 2 {
		t.Fatalf("wait timing out: exit %d, want 2", code)
	}
	// Generous latency bounds: this checks exit codes, not this machine's noise.
	gates := `{"include_paths": ["/api/users/**"], "gates": {"min_pairs": 20, "max_latency_ratio": {"p50": 1000, "p95": 1000, "p99": 1000}}}`
	verdictAfterTraffic := func(shadowURL string, want int) {
		t.Helper()
		out, errOut, code := d.run("-json", "create", "-name", "verdict", "-shadow", shadowURL, "-percent", "100", "-fields", gates)
		if code != 0 {
			t.Fatalf("create: exit %d: %s", code, errOut)
		}
		var v launch.Launch
		_ = json.Unmarshal([]byte(out), &v)
		s.waitMirrorSees()
		for i := range 30 {
			s.send("GET", "/api/users/"+strconv.Itoa(i+1), nil)
		}
		s.drained()
		testenv.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
			if n := s.rows(v.ID, ""); n < 30 {
				return fmt.Errorf("%d rows", n)
			}
			return nil
		})
		if out, errOut, code := d.run("wait", v.ID, "-timeout", "20s", "-interval", "200ms"); code != want {
			t.Fatalf("wait on %s: exit %d, want %d:\n%s%s", shadowURL, code, want, out, errOut)
		}
		if _, _, code := d.run("rollback", v.ID); code != 0 {
			t.Fatalf("rollback: exit %d", code)
		}
	}
	verdictAfterTraffic(s.shadow.URL, 0)                                          // identical route: pass
	verdictAfterTraffic("http://127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)), 1) // shadow down: fail

	// API and usage errors exit 3 with the API's message, never 0/1/2,
	// which a pipeline reads as verdicts.
	for _, args := range [][]string{
		{"resume", l.ID},           // 409: rolled back
		{"show", "no-such-launch"}, // 404
		{"percent", l.ID, "150"},   // 422
		{"percent", l.ID, "lots"},  // usage
		{"create", "-name", "x"},   // 422: no shadow URL
		{"frobnicate"},             // usage
		{"wait", "no-such-launch", "-timeout", "2s", "-interval", "100ms"}, // 404 ends the wait at once
	} {
		_, errOut, code := d.run(args...)
		if code != 3 || !strings.Contains(errOut, "darkctl:") {
			t.Errorf("%v: exit %d, stderr %q; want exit 3 with a message", args, code, errOut)
		}
	}
	// DARKLAUNCH_TOKEN unset or wrong: the API's 401, exit 3.
	for _, token := range []string{"", "not-the-token"} {
		anonymous := *d
		anonymous.token = token
		if _, errOut, code := anonymous.run("list"); code != 3 || !strings.Contains(errOut, "401 Unauthorized") {
			t.Errorf("list with DARKLAUNCH_TOKEN %q: exit %d, stderr %q; want exit 3 and the 401", token, code, errOut)
		}
	}
}
