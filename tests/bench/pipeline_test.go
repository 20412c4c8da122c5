// Package bench measures the whole pipeline as production runs it: the
// mirror, nats-server, shadow-runner, comparator and clickhouse-server as
// separate processes, loaded from outside by hey, with the CPU time each
// process spends per compared pair read from /proc.
package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// root is the repository, from tests/bench.
const root = "../.."

// BenchmarkPipeline sends DL_BENCH_PAIRS requests (default 20,000) through
// the mirror at 100% sampling, as fast as 50 hey clients go, waits until
// every sampled envelope is a row in ClickHouse, and prints pairs/s end to
// end (from the first request to the last row) and the CPU microseconds
// per pair of each process. DL_BENCH_PROFILE=dir also writes CPU profiles
// of the Go services there (profile); DL_BENCH_METHOD=POST sends POSTs
// with a JSON body instead of GETs. The primary and the shadow (1 KiB JSON, same
// answer) run in this process and are not counted, as in production they
// run elsewhere. It fails on a lost or duplicate row.
func BenchmarkPipeline(b *testing.B) {
	pairs := 20000
	if v := os.Getenv("DL_BENCH_PAIRS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("DL_BENCH_PAIRS=%q: want a positive number", v)
		}
		pairs = n
	}
	hey, err := exec.LookPath("hey")
	if err != nil {
		b.Fatal("hey is not installed: run `make deps`")
	}
	for b.Loop() {
		p := startPipeline(b)
		p.measure(b, hey, pairs)
	}
}

type pipeline struct {
	procs     map[string]int // process name → pid
	mirrorURL string
	admin     map[string]string // service → admin address
	ch        clickhouse.Conn
	launchID  string
}

func startPipeline(b *testing.B) *pipeline {
	dir := b.TempDir()
	bins := map[string]string{}
	for _, svc := range []string{"mirror", "shadow-runner", "comparator"} {
		bins[svc] = filepath.Join(dir, svc)
		cmd := exec.Command("go", "build", "-trimpath", "-o", bins[svc], "./cmd/"+svc)
		cmd.Dir = filepath.Join(root, "services", svc)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v\n%s", svc, err, out)
		}
	}

	p := &pipeline{procs: map[string]int{}, admin: map[string]string{}}
	natsPort := testenv.FreePort(b)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	natsBin, err := filepath.Abs(filepath.Join(root, ".local/bin/nats-server"))
	if err != nil {
		b.Fatal(err)
	}
	natsArgs := testenv.NATSServerArgs(b, dir, natsPort)
	if os.Getenv("DL_BENCH_PROFILE") != "" {
		// nats-server's profiles on their own port, read like the services'.
		port := testenv.FreePort(b)
		natsArgs = append(natsArgs, "--profile", strconv.Itoa(port))
		p.admin["nats-server"] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	p.procs["nats-server"] = start(b, dir, "nats-server", nil, natsBin, natsArgs...)
	waitHTTP(b, "", fmt.Sprintf("127.0.0.1:%d", natsPort), false)

	ch := testenv.NewClickHouse(b)
	ch.Start()
	p.procs["clickhouse-server"] = ch.PID()

	// The primary and the shadow give the same 1 KiB JSON answer, so every
	// pair compares equal: the bench measures the pipeline, not diffs.
	body := []byte(`{"items":[` + strings.Repeat(`{"id":12345,"name":"widget","price":12.5},`, 23) + `{"id":0}]}`)
	backend := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	primary, shadow := httptest.NewServer(backend), httptest.NewServer(backend)
	b.Cleanup(primary.Close)
	b.Cleanup(shadow.Close)

	common := []string{"NATS_URL=" + natsURL, "CLICKHOUSE_ADDR=" + ch.Addr(), "LOG_LEVEL=warn"}
	mirrorAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	p.mirrorURL = "http://" + mirrorAddr
	for svc, env := range map[string][]string{
		"mirror":        {"MIRROR_ADDR=" + mirrorAddr, "MIRROR_PRIMARY_URL=" + primary.URL},
		"shadow-runner": {},
		"comparator":    {},
	} {
		prefix := map[string]string{"mirror": "MIRROR", "shadow-runner": "RUNNER", "comparator": "COMPARATOR"}[svc]
		p.admin[svc] = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
		env = append(env, prefix+"_ADMIN_ADDR="+p.admin[svc])
		p.procs[svc] = start(b, dir, svc, append(common, env...), bins[svc])
	}
	for svc, addr := range p.admin {
		if svc != "nats-server" {
			waitHTTP(b, svc, addr, true)
		}
	}

	ctx := testenv.Context(b)
	_, js := testenv.Connect(b, natsURL)
	kv, err := launch.Setup(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	l, err := launch.NewStore(kv).Create(ctx, launch.Launch{Name: "bench", ShadowURL: shadow.URL, SamplePercent: 100, Methods: []string{benchMethod()}})
	if err != nil {
		b.Fatal(err)
	}
	p.launchID = l.ID

	p.ch, err = clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.ch.Close() })

	// Warm up: the mirror sees the launch, the comparator has migrated the
	// schema, and one pair went all the way through.
	testenv.CheckFor(b, 60*time.Second, 100*time.Millisecond, func() error {
		req, err := http.NewRequest(benchMethod(), p.mirrorURL+"/warmup", strings.NewReader(postBody))
		if err != nil {
			return err
		}
		if benchMethod() == http.MethodGet {
			req.Body, req.ContentLength = http.NoBody, 0
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		rows, _, err := p.rows(ctx)
		if err == nil && rows == 0 {
			err = fmt.Errorf("no pair stored yet")
		}
		return err
	})
	return p
}

// measure runs the load and prints the table.
func (p *pipeline) measure(b *testing.B, hey string, n int) {
	ctx := testenv.Context(b)
	// The warm-up pairs are done when rows stop trailing the sampled count.
	base := p.waitDrained(b, ctx)
	cpu0 := p.cpu(b)
	profiled := p.profile(b, os.Getenv("DL_BENCH_PROFILE"))
	start := time.Now()
	args := []string{"-n", strconv.Itoa(n), "-c", "50", "-m", benchMethod()}
	if benchMethod() == http.MethodPost {
		args = append(args, "-T", "application/json", "-d", postBody)
	}
	out, err := exec.Command(hey, append(args, p.mirrorURL+"/api/items")...).CombinedOutput()
	if err != nil {
		b.Fatalf("hey: %v\n%s", err, out)
	}
	loadDone := time.Since(start)
	if !strings.Contains(string(out), "[200]\t"+strconv.Itoa(n)+" responses") {
		b.Fatalf("not every client request got a 200 from the primary:\n%s", out)
	}
	final := p.waitDrained(b, ctx)
	elapsed := time.Since(start)
	cpu1 := p.cpu(b)
	profiled()

	stored := final.rows - base.rows
	if final.dups != 0 {
		b.Errorf("%d duplicate rows (count() - uniqExact(envelope_id))", final.dups)
	}
	if lost := final.sampled - final.dropped - final.rows; lost != 0 {
		b.Errorf("%d sampled envelopes are neither rows nor counted drops (sampled %d, dropped %d, rows %d)", lost, final.sampled, final.dropped, final.rows)
	}
	if final.dropped > base.dropped {
		b.Logf("the tap dropped %d envelopes (counted): %s", final.dropped-base.dropped, final.reasons)
	}

	fmt.Printf("\npipeline: %d %s requests at 100%% sampling (hey -c 50), %d pairs stored in %.1f s: %.0f pairs/s end to end (load itself: %.1f s)\n",
		n, benchMethod(), stored, elapsed.Seconds(), float64(stored)/elapsed.Seconds(), loadDone.Seconds())
	fmt.Printf("%-18s %12s %12s\n", "process", "CPU s", "µs/pair")
	names := make([]string, 0, len(cpu0))
	for name := range cpu0 {
		names = append(names, name)
	}
	sort.Strings(names)
	var total time.Duration
	for _, name := range names {
		d := cpu1[name] - cpu0[name]
		total += d
		fmt.Printf("%-18s %12.2f %12.0f\n", name, d.Seconds(), perPair(d, stored))
	}
	fmt.Printf("%-18s %12.2f %12.0f\n", "total", total.Seconds(), perPair(total, stored))
	b.ReportMetric(perPair(total, stored), "cpu-µs/pair")
	b.ReportMetric(float64(stored)/elapsed.Seconds(), "pairs/s")
}

// benchMethod is DL_BENCH_METHOD: GET (the default) or POST, whose
// requests carry postBody, about 500 bytes of JSON.
func benchMethod() string {
	if os.Getenv("DL_BENCH_METHOD") == http.MethodPost {
		return http.MethodPost
	}
	return http.MethodGet
}

var postBody = `{"order":{"items":[` + strings.Repeat(`{"sku":"widget-12345","qty":2},`, 15) + `{"sku":"x","qty":1}]}}`

func perPair(d time.Duration, pairs uint64) float64 {
	if pairs == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(pairs)
}

// counts are the loss accounting of one moment: what the tap sampled and
// dropped, and the rows stored.
type counts struct {
	sampled, dropped, rows, dups uint64
	reasons                      string
}

// waitDrained waits until every sampled envelope is a stored row or a
// counted drop, and the count has held still for a second.
func (p *pipeline) waitDrained(b *testing.B, ctx context.Context) counts {
	var c counts
	var last uint64
	stillSince := time.Now()
	testenv.CheckFor(b, 10*time.Minute, 200*time.Millisecond, func() error {
		var err error
		c.sampled, c.dropped, c.reasons = p.mirrorCounts(b)
		if c.rows, c.dups, err = p.rows(ctx); err != nil {
			return err
		}
		if c.rows != last {
			last, stillSince = c.rows, time.Now()
		}
		if c.rows+c.dropped < c.sampled {
			return fmt.Errorf("%d of %d sampled envelopes stored, %d dropped", c.rows, c.sampled, c.dropped)
		}
		if time.Since(stillSince) < time.Second {
			return fmt.Errorf("rows still growing")
		}
		return nil
	})
	return c
}

func (p *pipeline) rows(ctx context.Context) (rows, dups uint64, err error) {
	var uniq uint64
	err = p.ch.QueryRow(ctx, "SELECT count(), uniqExact(envelope_id) FROM darklaunch.comparisons WHERE launch_id = ?", p.launchID).Scan(&rows, &uniq)
	return rows, rows - uniq, err
}

// mirrorCounts reads the tap's sampled and dropped counters from /metrics.
func (p *pipeline) mirrorCounts(b *testing.B) (sampled, dropped uint64, reasons string) {
	resp, err := http.Get("http://" + p.admin["mirror"] + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var rs []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "darklaunch_mirror_envelopes_sampled_total":
			sampled = uint64(v)
		case strings.HasPrefix(name, "darklaunch_mirror_envelopes_dropped_total{"):
			dropped += uint64(v)
			if v > 0 {
				rs = append(rs, fmt.Sprintf("%s=%d", name, uint64(v)))
			}
		}
	}
	return sampled, dropped, strings.Join(rs, " ")
}

// profile, with dir set (DL_BENCH_PROFILE), takes a CPU profile of the
// mirror, the runner, the comparator and nats-server (/debug/pprof/profile) over
// the first 5 seconds of the load, into dir/<service>.pprof; with
// DL_BENCH_PAIRS=60000 the load lasts longer than that. The function it
// returns waits for them, then saves each one's allocations since it
// started (dir/<service>.allocs.pprof, go tool pprof -sample_index
// alloc_space or alloc_objects).
func (p *pipeline) profile(b *testing.B, dir string) (wait func()) {
	if dir == "" {
		return func() {}
	}
	save := func(svc, path, file string) {
		resp, err := http.Get("http://" + p.admin[svc] + path)
		if err != nil {
			b.Errorf("profile %s: %v", svc, err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(dir, file))
		if err == nil {
			_, err = io.Copy(f, resp.Body)
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			b.Errorf("profile %s: %v", svc, err)
		}
	}
	var wg sync.WaitGroup
	for svc := range p.admin {
		wg.Go(func() { save(svc, "/debug/pprof/profile?seconds=5", svc+".pprof") })
	}
	return func() {
		wg.Wait()
		for svc := range p.admin {
			save(svc, "/debug/pprof/allocs", svc+".allocs.pprof")
		}
	}
}

// cpu reads each process's user+system CPU time.
func (p *pipeline) cpu(b *testing.B) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range p.procs {
		d, err := testenv.ProcessCPU(pid, false)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		out[name] = d
	}
	return out
}

// start runs a process until the benchmark ends and returns its pid.
func start(b *testing.B, dir, name string, env []string, bin string, args ...string) int {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if b.Failed() {
			if data, err := os.ReadFile(logf.Name()); err == nil {
				b.Logf("%s log:\n%s", name, data[max(0, len(data)-3000):])
			}
		}
	})
	return cmd.Process.Pid
}

// waitHTTP waits until addr accepts TCP connections (healthz: until its
// /healthz answers 200).
func waitHTTP(b *testing.B, what, addr string, healthz bool) {
	testenv.CheckFor(b, 60*time.Second, 100*time.Millisecond, func() error {
		if !healthz {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /healthz: %s", what, resp.Status)
		}
		return nil
	})
}
