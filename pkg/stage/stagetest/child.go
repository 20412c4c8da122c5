package stagetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ChildEnv makes a stage's test binary run the stage itself instead of
// its tests, so a benchmark can measure the stage's own CPU time apart
// from the servers and load generator in the test process:
//
//	func TestMain(m *testing.M) {
//		if os.Getenv(stagetest.ChildEnv) != "" {
//			os.Exit(stagetest.RunChild(func() int { return service.Main("shadow-runner", DefaultConfig(), New) }))
//		}
//		os.Exit(m.Run())
//	}
const ChildEnv = "DARKLAUNCH_STAGE_CHILD"

// ProfileEnv, set in the test's environment to a file name, makes the
// child write a CPU profile of its whole run there (go tool pprof).
const ProfileEnv = "DARKLAUNCH_STAGE_CPUPROFILE"

// RunChild runs main (the stage's service.Main) in the child, with a CPU
// profile when ProfileEnv is set, and returns its exit code.
func RunChild(main func() int) int {
	if path := os.Getenv(ProfileEnv); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		}
	}
	return main()
}

// Child is the stage running in a child process (the test binary run
// again with ChildEnv set, and no arguments, so service.Main reads only
// the environment).
type Child struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
}

// StartChild starts the stage with the settings env ("NAME=value"); it is
// stopped when the test ends.
func StartChild(t testing.TB, env ...string) *Child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &Child{cmd: exec.Command(exe), done: make(chan struct{})}
	c.cmd.Env = append(append(os.Environ(), env...), ChildEnv+"=1")
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Logf("child: %v; its output:\n%s", err, c.out.String())
		}
	})
	return c
}

// Stop ends the child with SIGTERM (its drain) and waits for it.
func (c *Child) Stop() error {
	select {
	case <-c.done:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
			return fmt.Errorf("child did not stop within 30s")
		}
	}
	if st := c.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("child exited: %s", st)
	}
	return nil
}

// CPU is the CPU time (user and system) the child has used so far, from
// /proc (to 10ms).
func (c *Child) CPU(t testing.TB) time.Duration {
	t.Helper()
	d, err := testenv.ProcessCPU(c.cmd.Process.Pid, false)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Metric is the value of a metric line (name and labels as exposed) on
// the admin server at addr; 0 when it is not there (yet) or the server
// does not answer.
func Metric(addr, name string) float64 {
	// Uncompressed: gzip would cost the measured process more than the
	// scrape itself.
	resp, err := plainClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

var plainClient = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 5 * time.Second}

// WaitMetric waits until the metric reaches want, scraping every 100ms.
func WaitMetric(t testing.TB, addr, name string, want float64, within time.Duration) {
	t.Helper()
	testenv.CheckFor(t, within, 100*time.Millisecond, func() error {
		if v := Metric(addr, name); v < want {
			return fmt.Errorf("%s = %v, want %v", name, v, want)
		}
		return nil
	})
}

// MeasureCPU is one round of a stage's CPU benchmark: send publishes n
// items through js (asynchronously, PublishAsync), then it waits until the
// child's counter metric (on its admin address) reaches n, and reports the
// child's CPU microseconds per item (cpu-µs/pair) and the items per second
// from the first publish to the last item counted (pairs/s).
func MeasureCPU(b *testing.B, c *Child, js jetstream.JetStream, admin, metric string, n int, send func()) {
	b.Helper()
	cpu0, start := c.CPU(b), time.Now()
	send()
	<-js.PublishAsyncComplete()
	WaitMetric(b, admin, metric, float64(n), 5*time.Minute)
	cpu, took := c.CPU(b)-cpu0, time.Since(start)
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/pair")
	b.ReportMetric(float64(n)/took.Seconds(), "pairs/s")
}

// PublishAsync publishes m asynchronously; when the publisher has outrun
// the server (too many acks pending) it waits for them once, then goes on.
func PublishAsync(t testing.TB, js jetstream.JetStream, m *nats.Msg) {
	t.Helper()
	_, err := js.PublishMsgAsync(m)
	if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
		<-js.PublishAsyncComplete()
		_, err = js.PublishMsgAsync(m)
	}
	if err != nil {
		t.Fatal(err)
	}
}
