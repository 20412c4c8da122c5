package e2e

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// darkctl runs the real binary against the stack's reporter.
type darkctl struct {
	t   *testing.T
	bin string
	url string
}

func buildDarkctl(t *testing.T, s *stack) *darkctl {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "darkctl")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/darklaunch/darklaunch/cmd/darkctl").CombinedOutput()
	if err != nil {
		t.Fatalf("build darkctl: %v\n%s", err, out)
	}
	return &darkctl{t: t, bin: bin, url: "http://" + s.reporter.Addr()}
}

// run returns stdout, stderr and the exit code.
func (d *darkctl) run(args ...string) (string, string, int) {
	d.t.Helper()
	cmd := exec.Command(d.bin, append([]string{"-reporter", d.url}, args...)...)
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
	var l launchJSON
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
}
