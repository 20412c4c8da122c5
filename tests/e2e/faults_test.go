//go:build faults

package e2e

// The fault suite (`make test-faults`, issue 11 point 8): the pipeline
// under steady load while a part fails. Every case checks that nothing is
// lost (each sampled envelope is a row in ClickHouse or a drop the mirror
// counted), that no row is written twice (raw count() against
// uniqExact(envelope_id), without FINAL), and that the primary never
// failed a client; it logs how long the pipeline took to recover. The
// NATS cluster cases are in cluster_test.go. Both files build with the
// `faults` tag only: they take minutes, and run in `make test-faults`.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// faultRate is the load the fault cases run under, in requests per second
// through the mirror (every one sampled).
const faultRate = 300

// steadyLoad sends GET /api/users/<n> through the mirror at about rate requests
// per second until stop (which lets the requests under way finish), and
// counts every request the client did not get the primary's 200 for.
type steadyLoad struct {
	traffic  // sent, waitMore, stop
	failed   atomic.Int64
	mu       sync.Mutex
	firstErr string
}

func (s *stack) steady(rate int) *steadyLoad {
	const clients = 10
	ctx, cancel := context.WithCancel(context.Background())
	l := &steadyLoad{traffic: traffic{cancel: cancel}}
	var n atomic.Int64
	for range clients {
		l.wg.Go(func() {
			retry.Every(ctx, clients*time.Second/time.Duration(rate), func() {
				id := n.Add(1)%1000 + 1
				// Not cancelled by stop: a request cut short would be a
				// client abort, which the mirror drops (and counts).
				res, err := s.client.Get(fmt.Sprintf("http://%s/api/users/%d", s.mirror.Addr(), id))
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(res.Body)
					res.Body.Close()
				}
				l.sent.Add(1)
				if err != nil || res.StatusCode != http.StatusOK || !strings.Contains(string(body), fmt.Sprintf(`"id":%d`, id)) {
					l.failed.Add(1)
					l.mu.Lock()
					if l.firstErr == "" {
						if err != nil {
							l.firstErr = err.Error()
						} else {
							l.firstErr = fmt.Sprintf("%d %q", res.StatusCode, body)
						}
					}
					l.mu.Unlock()
				}
			})
		})
	}
	return l
}

// rowCounts counts a launch's rows as stored, without FINAL: count() is
// every row written, unique the distinct envelope ids.
func (s *stack) rowCounts(launchID string) (count, unique uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.ch.QueryRow(ctx, "SELECT count(), uniqExact(envelope_id) FROM darklaunch.comparisons WHERE launch_id = ?", launchID).
		Scan(&count, &unique)
	return count, unique, err
}

// rowsSince counts a launch's rows of requests the mirror received after t.
func (s *stack) rowsSince(launchID string, t time.Time) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	err := s.ch.QueryRow(ctx, "SELECT count() FROM darklaunch.comparisons WHERE launch_id = ? AND received_at_us > ?", launchID, t.UnixMicro()).
		Scan(&n)
	return n, err
}

// recovered waits until a row of a request received after since is
// stored, and returns how long after since that was: the time the
// pipeline took to carry fresh traffic end to end again.
func (s *stack) recovered(launchID string, since time.Time, timeout time.Duration) time.Duration {
	s.t.Helper()
	testenv.CheckFor(s.t, timeout, 50*time.Millisecond, func() error {
		n, err := s.rowsSince(launchID, since)
		if err == nil && n == 0 {
			err = fmt.Errorf("no row of a request received after %s yet (mirror %+v)", since.Format(time.StampMilli), s.mirror.Stats())
		}
		return err
	})
	return time.Since(since)
}

// natsClient connects a test client to url without creating or changing
// any stream.
func natsClient(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	_, js := testenv.Client(t, config.NATS{NATSURL: url})
	return js
}

// accounting is where a launch's sampled envelopes ended up.
type accounting struct {
	sampled, published, dropped uint64
	droppedBy                   map[string]uint64
	rows, unique                uint64
	requests, primaryErrors     int64
	firstPrimaryError           string
	// report is the report's accounting once it stopped changing
	// (GET /v1/launches/{id}/report).
	report api.Accounting
}

func (a accounting) String() string {
	return fmt.Sprintf("requests %d (primary errors %d), sampled %d, published %d, dropped %d %v, rows %d (distinct envelopes %d); report: %s",
		a.requests, a.primaryErrors, a.sampled, a.published, a.dropped, a.droppedBy, a.rows, a.unique, reportAccounting(a.report))
}

func reportAccounting(r api.Accounting) string {
	return fmt.Sprintf("sampled %d, published %d, dropped %d, replayed %d, skipped %d, dead-lettered %d, compared %d, in flight %d, unaccounted %d (processes %+v)",
		r.Sampled, r.Published, r.DroppedTotal(), r.Replayed, r.SkippedTotal(), r.DeadLettered, r.Compared, r.InFlight, r.Unaccounted, r.Processes)
}

// settle stops the load, then waits until the mirror has published or
// dropped every envelope it sampled and the pipeline is idle: both work
// queues empty and the row counts stable; then until the report's
// accounting stops changing (the processes report their counts every few
// seconds, the reporter caches). It returns the accounting.
func (s *stack) settle(l *steadyLoad, launchID string, js jetstream.JetStream, timeout time.Duration) accounting {
	s.t.Helper()
	l.stop()
	st := s.drained()
	var last string
	stable := 0
	testenv.CheckFor(s.t, timeout, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		count, unique, err := s.rowCounts(launchID)
		if err != nil {
			stable = 0
			return err
		}
		now := fmt.Sprintf("rows %d (distinct envelopes %d) of %d published", count, unique, st.Published)
		for _, name := range []string{stream.EnvelopesStream, stream.PairsStream} {
			n, err := testenv.StreamMsgs(ctx, js, name)
			if err != nil {
				stable = 0
				return fmt.Errorf("%s; stream %s: %w", now, name, err)
			}
			if n != 0 {
				stable = 0
				return fmt.Errorf("%s; stream %s still holds %d messages", now, name, n)
			}
		}
		if now != last {
			last, stable = now, 0
			return fmt.Errorf("still changing: %s", now)
		}
		if stable++; stable < 5 { // a second of no change, queues empty
			return fmt.Errorf("%s, waiting for them to stay", now)
		}
		return nil
	})
	count, unique, err := s.rowCounts(launchID)
	if err != nil {
		s.t.Fatal(err)
	}
	// The report's accounting, polled until it is the same five times in
	// a row and has every tap's count (check asserts what it says).
	var report api.Accounting
	last, stable = "", 0
	testenv.CheckFor(s.t, time.Minute, 200*time.Millisecond, func() error {
		var r api.Report
		if code, body := s.api("GET", "/v1/launches/"+launchID+"/report", nil); code != http.StatusOK {
			stable = 0
			return fmt.Errorf("report: %d %s", code, body)
		} else if err := json.Unmarshal(body, &r); err != nil {
			stable = 0
			return fmt.Errorf("report: %w", err)
		}
		switch {
		case r.Accounting == nil:
			stable = 0
			return fmt.Errorf("report without accounting")
		case r.Accounting.Error != "":
			stable = 0
			return fmt.Errorf("report accounting error: %s", r.Accounting.Error)
		case r.Accounting.Sampled < st.Sampled:
			stable = 0
			return fmt.Errorf("report accounting has sampled %d of the mirror's %d: %s", r.Accounting.Sampled, st.Sampled, reportAccounting(*r.Accounting))
		}
		report = *r.Accounting
		if now := reportAccounting(report); now != last {
			last, stable = now, 0
			return fmt.Errorf("report accounting still changing: %s", now)
		}
		if stable++; stable < 5 {
			return fmt.Errorf("report accounting %s, waiting for it to stay", last)
		}
		return nil
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return accounting{sampled: st.Sampled, published: st.Published, dropped: st.DroppedTotal(), droppedBy: st.Dropped,
		rows: count, unique: unique, requests: l.sent.Load(), primaryErrors: l.failed.Load(), firstPrimaryError: l.firstErr,
		report: report}
}

// check asserts the accounting: no primary error, no duplicate row, every
// sampled envelope a row or a counted drop, and at most maxDropped of them
// dropped (a fraction; 1 allows any).
func (a accounting) check(t *testing.T, maxDropped float64) {
	t.Helper()
	t.Logf("accounting: %s", a)
	if a.requests == 0 || a.sampled == 0 {
		t.Errorf("no traffic: %s", a)
	}
	if a.primaryErrors != 0 {
		t.Errorf("%d of %d requests did not get the primary's answer; first: %s", a.primaryErrors, a.requests, a.firstPrimaryError)
	}
	if a.rows != a.unique {
		t.Errorf("%d duplicate rows: count() %d, uniqExact(envelope_id) %d", a.rows-a.unique, a.rows, a.unique)
	}
	if a.unique+a.dropped != a.sampled {
		t.Errorf("accounting off by %d: %d distinct rows + %d counted drops != %d sampled (%s)",
			int64(a.sampled)-int64(a.unique+a.dropped), a.unique, a.dropped, a.sampled, a)
	}
	if a.unique != a.published {
		t.Errorf("%d envelopes acknowledged by JetStream but %d distinct rows", a.published, a.unique)
	}
	// The report's loss accounting agrees: nothing unaccounted, nothing
	// in flight, and the mirror's sampled count.
	if a.report.Unaccounted != 0 || a.report.InFlight != 0 {
		t.Errorf("report accounting: %d unaccounted, %d in flight once settled: %s", a.report.Unaccounted, a.report.InFlight, reportAccounting(a.report))
	}
	if a.report.Sampled != a.sampled {
		t.Errorf("report accounting has %d sampled, the mirror %d: %s", a.report.Sampled, a.sampled, reportAccounting(a.report))
	}
	if limit := maxDropped * float64(a.sampled); float64(a.dropped) > limit {
		t.Errorf("%d of %d sampled envelopes dropped (%.2f%%), at most %.0f%% allowed: %v",
			a.dropped, a.sampled, 100*float64(a.dropped)/float64(a.sampled), 100*maxDropped, a.droppedBy)
	}
}

// faultStack starts a stack with a 100% launch under load and waits until
// rows flow.
func faultStack(t *testing.T, options ...stackOption) (*stack, string, *steadyLoad) {
	t.Helper()
	s := startStack(t, options...)
	l := s.createLaunch(s.shadow.URL, 100)
	s.waitMirrorSees()
	ld := s.steady(faultRate)
	t.Cleanup(ld.stop)
	s.recovered(l.ID, time.Now(), 60*time.Second)
	ld.waitMore(t, faultRate) // a second of steady load before the fault
	return s, l.ID, ld
}

// serviceBinary builds a service's command into a temp dir.
func serviceBinary(t *testing.T, service string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), service)
	pkg := "github.com/darklaunch/darklaunch/services/" + service + "/cmd/" + service
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", service, err, out)
	}
	return bin
}

// metricValue is the value of the first sample in a /metrics text whose
// name ends in suffix (-1 if none).
func metricValue(metrics, suffix string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if ok && !strings.HasPrefix(line, "#") && strings.HasSuffix(name, suffix) {
			if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
				return v
			}
		}
	}
	return -1
}

// shadowGate holds the shadow's answers while it is closed: a replay under
// way then cannot finish, so a runner holding its delivery is mid-work
// for certain.
type shadowGate struct {
	mu      sync.Mutex
	open    chan struct{} // closed while the gate is open
	waiting atomic.Int64  // requests held now
}

func newShadowGate() *shadowGate {
	g := &shadowGate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *shadowGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *shadowGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *shadowGate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		open := g.open
		g.mu.Unlock()
		g.waiting.Add(1)
		select {
		case <-open:
		case <-r.Context().Done():
		}
		g.waiting.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// workerMetrics reads a worker process's in_flight (deliveries held, not
// settled) and received_total (deliveries read) from its /metrics.
func workerMetrics(admin string) (held, received float64, err error) {
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return 0, 0, err
	}
	return metricValue(string(body), "_in_flight"), metricValue(string(body), "_received_total"), nil
}

// TestFaultWorkerKilled: a second worker, a real process built from the
// service's command, holds deliveries when it is killed with SIGKILL; what
// it held is redelivered to the worker left (after the consumer's AckWait)
// and stored once.
//
// Comparator: a batch of pairs not yet inserted (it fills for 3 s), at
// least 20 deliveries. Shadow-runner: deliveries whose replays cannot
// finish: the shadow (100 ms an answer) is held from before the process
// read its last delivery until after the kill. Counting the runner's
// deliveries would not do: each is a batch of up to 64 envelopes, as many
// as the mirror packed in its 5 ms (at 300 requests/s over two runners a
// process held 3 to 5 of them, never reliably more), so the number says
// nothing of the work under way; a delivery read while the shadow is held
// is one whose envelopes are under way for certain.
func TestFaultWorkerKilled(t *testing.T) {
	gate := newShadowGate()
	for _, w := range []struct {
		service, stream, consumer string
		minHeld                   float64 // deliveries held at the kill: a batch under way, not one in passing
		gate                      *shadowGate
		options                   []stackOption
		env                       func(s *stack, admin string) []string
	}{
		{service: "comparator", stream: stream.PairsStream, consumer: stream.ComparatorConsumer, minHeld: 20,
			env: func(s *stack, admin string) []string {
				return []string{"CLICKHOUSE_ADDR", s.chServer.Addr(), "CLICKHOUSE_DATABASE", "darklaunch", "COMPARATOR_ADMIN_ADDR", admin,
					"COMPARATOR_FLUSH_INTERVAL", "3s", "COMPARATOR_BATCH_SIZE", "5000"}
			}},
		{service: "shadow-runner", stream: stream.EnvelopesStream, consumer: stream.RunnerConsumer, minHeld: 1, gate: gate,
			options: []stackOption{wrapShadow(func(h http.Handler) http.Handler {
				return gate.wrap(takeAtLeast(100*time.Millisecond, h))
			})},
			env: func(s *stack, admin string) []string {
				// RUNNER_TIMEOUT well above the time the shadow is held (a
				// replay that timed out would be answered, and acked).
				return []string{"RUNNER_ADMIN_ADDR", admin, "RUNNER_SEAL_KEY_FILE", s.sealKeys, "RUNNER_TIMEOUT", "10s"}
			}},
	} {
		t.Run(w.service, func(t *testing.T) {
			bin := serviceBinary(t, w.service)
			s, id, l := faultStack(t, w.options...)
			admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			cmd := exec.Command(bin)
			cmd.Env = testenv.Env(append(w.env(s, admin), "NATS_URL", s.nats.URL(), "LOG_LEVEL", "warn")...)
			cmd.Stdout, cmd.Stderr = testenv.LogWriter(t), testenv.LogWriter(t)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
			var held, received, since float64
			if w.gate != nil {
				// The process works first, then the shadow is held.
				testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
					var err error
					if held, received, err = workerMetrics(admin); err == nil && received < 1 {
						err = fmt.Errorf("the %s process has read no delivery yet", w.service)
					}
					return err
				})
				w.gate.hold()
				t.Cleanup(w.gate.release)
				// What was read until now may have been answered already;
				// what is read from now on cannot be.
				var err error
				if _, since, err = workerMetrics(admin); err != nil {
					t.Fatal(err)
				}
			}
			testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
				var err error
				if held, received, err = workerMetrics(admin); err != nil {
					return err
				}
				if held < w.minHeld || (w.gate != nil && received <= since) {
					return fmt.Errorf("the %s process holds %v deliveries (in_flight), waiting for %v; read %v, %v before the shadow was held",
						w.service, held, w.minHeld, received, since)
				}
				return nil
			})
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_, _ = cmd.Process.Wait()
			killed := time.Now()
			if w.gate != nil {
				t.Logf("%s process killed with SIGKILL holding %v deliveries, %v of them read while the shadow was held (%d replays waiting on it, both runners)",
					w.service, held, received-since, w.gate.waiting.Load())
				w.gate.release()
			} else {
				t.Logf("%s process killed with SIGKILL holding %v deliveries", w.service, held)
			}
			js := natsClient(t, s.nats.URL())
			if w.gate != nil {
				// How the mirror packed the load: envelopes per message.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if str, err := js.Stream(ctx, w.stream); err == nil {
					if info, err := str.Info(ctx); err == nil && info.State.LastSeq > 0 {
						t.Logf("the mirror published %d envelopes in %d messages (%.1f a message)", s.mirror.Stats().Published,
							info.State.LastSeq, float64(s.mirror.Stats().Published)/float64(info.State.LastSeq))
					}
				}
				cancel()
			}
			l.waitMore(t, faultRate)
			testenv.CheckFor(t, 3*time.Minute, 100*time.Millisecond, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				c, err := js.Consumer(ctx, w.stream, w.consumer)
				if err != nil {
					return err
				}
				info, err := c.Info(ctx)
				if err != nil {
					return err
				}
				if info.NumRedelivered == 0 {
					return fmt.Errorf("what the killed process held is not redelivered yet (ack pending %d)", info.NumAckPending)
				}
				return nil
			})
			t.Logf("recovery: the killed %s's deliveries were redelivered %v after the kill", w.service, time.Since(killed).Round(time.Millisecond))
			s.settle(l, id, js, 3*time.Minute).check(t, 0)
			t.Logf("recovery: everything stored %v after the kill", time.Since(killed).Round(time.Millisecond))
		})
	}
}

// TestFaultClickHouseDown: ClickHouse is down for 30 s under load; the
// comparator keeps its pairs and stores them once it is back.
func TestFaultClickHouseDown(t *testing.T) {
	s, id, l := faultStack(t)
	s.chServer.Stop()
	down := time.Now()
	testenv.CheckFor(t, 40*time.Second, 100*time.Millisecond, func() error {
		if d := time.Since(down); d < 30*time.Second {
			return fmt.Errorf("ClickHouse down for %v of 30s", d.Round(time.Second))
		}
		return nil
	})
	s.chServer.Start()
	up := time.Now()
	t.Logf("recovery: fresh rows stored %v after ClickHouse came back", s.recovered(id, up, 2*time.Minute).Round(time.Millisecond))
	// The backlog of the outage is stored too.
	testenv.CheckFor(t, 2*time.Minute, 100*time.Millisecond, func() error {
		n, err := s.rowsSince(id, down.Add(-time.Second))
		if err == nil && n < faultRate*25 {
			err = fmt.Errorf("%d rows of requests since the outage, want the %d of the outage at least", n, faultRate*25)
		}
		return err
	})
	t.Logf("recovery: the outage's backlog stored %v after ClickHouse came back", time.Since(up).Round(time.Millisecond))
	s.settle(l, id, natsClient(t, s.nats.URL()), 2*time.Minute).check(t, 0)
}

// TestFaultNATSRestart: the NATS server restarts under load; the mirror
// drops (and counts) what it cannot publish meanwhile, the rest flows on.
func TestFaultNATSRestart(t *testing.T) {
	s, id, l := faultStack(t)
	s.nats.Stop()
	l.waitMore(t, 2*faultRate) // the primary keeps answering without NATS
	s.nats.Start()
	up := time.Now()
	t.Logf("recovery: fresh rows stored %v after NATS came back", s.recovered(id, up, 2*time.Minute).Round(time.Millisecond))
	l.waitMore(t, faultRate)
	s.settle(l, id, natsClient(t, s.nats.URL()), 2*time.Minute).check(t, 1)
}

// TestFaultRedisDown: Redis (the reporter's cache) is down under load: the
// pipeline does not depend on it and the reporter still answers reports.
func TestFaultRedisDown(t *testing.T) {
	s, id, l := faultStack(t)
	s.redisServer.Stop()
	down := time.Now()
	l.waitMore(t, faultRate)
	if code, body := s.api("GET", "/v1/launches/"+id+"/report", nil); code != http.StatusOK {
		t.Errorf("report with Redis down: %d %s", code, body)
	}
	t.Logf("recovery: fresh rows stored %v after Redis went down", s.recovered(id, down, time.Minute).Round(time.Millisecond))
	s.redisServer.Start()
	up := time.Now()
	testenv.CheckFor(t, time.Minute, 100*time.Millisecond, func() error {
		if code, body := s.api("GET", "/v1/launches/"+id+"/report", nil); code != http.StatusOK {
			return fmt.Errorf("report after Redis came back: %d %s", code, body)
		}
		return nil
	})
	t.Logf("recovery: reports served %v after Redis came back", time.Since(up).Round(time.Millisecond))
	s.settle(l, id, natsClient(t, s.nats.URL()), 2*time.Minute).check(t, 0)
}
