package mirror

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// BenchmarkPublisher measures what the publisher sustains, from enqueue
// to the stream's ack, against a nats-server running as its own process
// (.local/bin/nats-server, built by `make deps`), so that the CPU of the
// tap's process and of NATS are told apart: envelopes/s, and the CPU µs
// per envelope of each. "single" publishes one v1 JSON message per
// envelope (MIRROR_BATCH_MAX_ENVELOPES=1: what the tap did before
// batches), "batch=N" batches of up to N envelopes (64: the default). Each envelope is one sampled GET with
// a 1 KiB JSON answer and the headers of a browser request. Run:
//
//	go test -run '^$' -bench Publisher -benchtime 50000x .
func BenchmarkPublisher(b *testing.B) {
	bin, err := filepath.Abs("../../.local/bin/nats-server")
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		b.Skipf("no nats-server binary (%v): run `make deps`", err)
	}
	for _, bc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"single", func(c *Config) { c.BatchMaxEnvelopes = 1 }},
		{"batch=16", func(c *Config) { c.BatchMaxEnvelopes = 16 }},
		{"batch=64", func(*Config) {}}, // the default
		{"batch=256", func(c *Config) { c.BatchMaxEnvelopes = 256 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			url, natsPID := startNATSProcess(b, bin)
			cfg := Config{
				PrimaryURL: "http://127.0.0.1:1",
				Addr:       "127.0.0.1:0",
				AdminAddr:  "127.0.0.1:0",
				Service:    testService,
				TapID:      "tap-bench",
				NATS:       config.NATS{NATSURL: url},
			}
			cfg.SealKeyFile, _ = testenv.SealKeys(b, testKeyID)
			bc.mod(&cfg)
			s, err := New(cfg, testenv.Logger(b, slog.LevelError))
			if err != nil {
				b.Fatal(err)
			}
			run := testenv.Run(b, s.Run)
			testenv.CheckFor(b, 20*time.Second, 10*time.Millisecond, func() error { return s.checkStreams(context.Background()) })
			tmpl := benchEnvelope()

			b.ResetTimer()
			start, self0, nats0 := time.Now(), selfCPU(), procCPU(b, natsPID)
			for range b.N {
				// Sustained, not bursts: never more than the queue holds.
				for s.pub.held.Load() >= int64(s.cfg.QueueSize)-64 {
					time.Sleep(100 * time.Microsecond)
				}
				env := *tmpl
				s.enqueue(&env, nil)
			}
			testenv.CheckFor(b, 5*time.Minute, time.Millisecond, func() error {
				if st := s.Stats(); st.Published+st.DroppedTotal() < uint64(b.N) {
					return errNotYet
				}
				return nil
			})
			elapsed, self, nats := time.Since(start), selfCPU()-self0, procCPU(b, natsPID)-nats0
			b.StopTimer()
			st := s.Stats()
			if st.Published != uint64(b.N) {
				b.Fatalf("published %d of %d: %+v", st.Published, b.N, st)
			}
			n := float64(b.N)
			b.ReportMetric(n/elapsed.Seconds(), "envelopes/s")
			b.ReportMetric(float64(self.Microseconds())/n, "mirror-µs/envelope")
			b.ReportMetric(float64(nats.Microseconds())/n, "nats-µs/envelope")
			b.ReportMetric(n/float64(st.Batches), "envelopes/msg")
			if err := run.Stop(); err != nil {
				b.Error(err)
			}
		})
	}
}

// benchEnvelope is a sampled GET with a 1 KiB JSON answer.
func benchEnvelope() *envelope.Envelope {
	body := []byte(`{"items":[` + strings.Repeat(`{"id":12345,"name":"widget","price":12.5},`, 23) + `{"id":0}]}`)
	return &envelope.Envelope{
		V: envelope.Version, LaunchID: "bench", TapID: "tap-bench", ReceivedAt: time.Now().UTC(),
		Request: envelope.Request{Method: "GET", Path: "/api/orders/42", RawQuery: "expand=items", Host: "shop.example",
			Headers: http.Header{
				"Accept":          {"application/json"},
				"Accept-Encoding": {"gzip, deflate, br"},
				"Accept-Language": {"en-GB,en;q=0.9"},
				"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"},
				"X-Request-Id":    {"5f0c6d0e-8a57-4a39-9f3e-0d7c2a1b9e44"},
			}},
		Primary: envelope.Response{Status: 200, Body: body, BodySize: int64(len(body)), LatencyUS: 850,
			Headers: http.Header{
				"Content-Type":   {"application/json"},
				"Content-Length": {strconv.Itoa(len(body))},
				"Date":           {fixedDate},
				"Cache-Control":  {"no-store"},
			}},
	}
}

// startNATSProcess runs nats-server with JetStream as its own process on a
// free port, until the benchmark ends; it returns its URL and pid.
func startNATSProcess(b *testing.B, bin string) (string, int) {
	port := testenv.FreePort(b)
	dir := b.TempDir()
	cmd := exec.Command(bin, testenv.NATSServerArgs(b, dir, port)...)
	// Killed with this process, even when it dies on a timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	testenv.CheckFor(b, 20*time.Second, 20*time.Millisecond, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	})
	return url, cmd.Process.Pid
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user+system CPU time.
func procCPU(b *testing.B, pid int) time.Duration {
	d, err := testenv.ProcessCPU(pid, false)
	if err != nil {
		b.Fatal(err)
	}
	return d
}
