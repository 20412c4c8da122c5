package mirror

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// BenchmarkTapOverhead is `make bench`'s tap table: out-of-process load
// (wrk, 2 threads, 50 keep-alive connections, 1 KiB JSON responses)
// against real processes, side by side in one run: the primary served
// directly, a tuned httputil.ReverseProxy (256 idle connections per host,
// a 32 KiB buffer pool, GOGC=400), nginx as a plain proxy and with its
// mirror module to a second server (nginx-light, from a generated config
// in a temp dir), and the tap at 0%, 10% and 100% sampling: the real
// mirror binary, built here from ./cmd/mirror (with its default.pgo) and
// run at its default settings, publishing to a real nats-server with
// JetStream (.local/bin/nats-server); the workers are not running, as in
// production, where they run elsewhere. The cases take turns in rounds
// (TAP_BENCH_ROUNDS, default 3, of TAP_BENCH_DURATION/rounds each,
// default 15s per case), so that a burst of other work on the machine
// does not land on one case; req/s is over all rounds, p50 and p99 the
// median of the rounds'. Everything shares the machine's cores: read the
// ratios to the tuned proxy, measured in the same run.
//
//	go test -run '^$' -bench TapOverhead -benchtime 1x
func BenchmarkTapOverhead(b *testing.B) {
	dur := benchEnvDuration(b, "TAP_BENCH_DURATION", 15*time.Second)
	rounds := 3
	if v := os.Getenv("TAP_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("TAP_BENCH_ROUNDS %q: a positive number", v)
		}
		rounds = n
	}
	wrkBin := benchTool(b, "wrk")
	rig := newTapRig(b)
	shadow, _ := rig.helper("shadow", "primary", "")
	proxy, proxyProc := rig.helper("proxy", "proxy", rig.primary)
	ngProxy, ngMirror, ngProc := rig.nginx(shadow)

	type result struct {
		name, url        string
		percent          float64 // -1: not the tap
		requests, errors int64
		elapsed          time.Duration
		p50s, p99s       []time.Duration
		published, drops float64
		rps              float64
		p50, p99         time.Duration
		// proc is the process serving the case (the hop, or the primary
		// for direct); its CPU time, and NATS's for the tap, per request.
		proc         *benchProc
		cpu, natsCPU time.Duration
		// idleP50, idleP99: latency at low load (one connection), where
		// what a hop adds is not hidden by queueing.
		idleP50, idleP99 time.Duration
	}
	cases := []*result{
		{name: "direct", url: rig.primary, percent: -1, proc: rig.primaryProc},
		{name: "go-proxy", url: proxy, percent: -1, proc: proxyProc},
		{name: "nginx-proxy", url: ngProxy, percent: -1, proc: ngProc},
		{name: "nginx-mirror", url: ngMirror, percent: -1, proc: ngProc},
		{name: "mirror-0%", url: rig.mirror, percent: 0, proc: rig.mirrorProc},
		{name: "mirror-10%", url: rig.mirror, percent: 10, proc: rig.mirrorProc},
		{name: "mirror-100%", url: rig.mirror, percent: 100, proc: rig.mirrorProc},
	}
	for round := range rounds {
		for _, r := range cases {
			if r.percent >= 0 {
				rig.setPercent(r.percent)
			}
			pub, drop := rig.metric(metricPrefix+"envelopes_published_total"), rig.metric(metricPrefix+"envelopes_dropped_total")
			var profiling sync.WaitGroup
			if r.percent >= 0 {
				profiling.Go(func() { rig.profile(fmt.Sprintf("cpu-%s-%d", r.name, round), dur/time.Duration(rounds)) })
			}
			cpu0, nats0 := r.proc.cpuTime(), rig.nats.cpuTime()
			w := runWrk(b, wrkBin, r.url+"/api/orders/42", dur/time.Duration(rounds))
			profiling.Wait()
			r.cpu += r.proc.cpuTime() - cpu0
			if r.percent >= 0 {
				r.natsCPU += rig.nats.cpuTime() - nats0
			}
			r.requests += w.requests
			r.errors += w.errors
			r.elapsed += w.elapsed
			r.p50s, r.p99s = append(r.p50s, w.p50), append(r.p99s, w.p99)
			if r.percent >= 0 {
				// The next case starts once the tap has published (or
				// dropped) what this one queued.
				rig.drained()
				r.published += rig.metric(metricPrefix+"envelopes_published_total") - pub
				r.drops += rig.metric(metricPrefix+"envelopes_dropped_total") - drop
			}
		}
	}
	for _, r := range cases {
		r.rps = float64(r.requests) / r.elapsed.Seconds()
		r.p50, r.p99 = median(r.p50s), median(r.p99s)
	}
	// Latency at low load: one connection, one request at a time.
	idle := benchEnvDuration(b, "TAP_BENCH_IDLE_DURATION", 4*time.Second)
	for _, r := range cases {
		if r.percent >= 0 {
			rig.setPercent(r.percent)
		}
		w := runWrkWith(b, wrkBin, r.url+"/api/orders/42", idle, 1, 1)
		r.idleP50, r.idleP99 = w.p50, w.p99
		if r.percent >= 0 {
			rig.drained()
		}
	}
	base := cases[1]
	perReq := func(r *result, d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(r.requests) }
	for _, r := range cases {
		b.Run(r.name, func(b *testing.B) {
			b.ReportMetric(0, "ns/op") // fixed-duration runs: ns/op says nothing
			b.ReportMetric(r.rps, "req/s")
			b.ReportMetric(float64(r.p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs")
			b.ReportMetric(r.rps/base.rps, "req/s-x-go-proxy")
			b.ReportMetric(perReq(r, r.cpu), "cpu-µs/req")
			b.ReportMetric(float64(r.idleP50.Microseconds()), "c1-p50-µs")
			b.ReportMetric(float64(r.idleP99.Microseconds()), "c1-p99-µs")
			if r.percent >= 0 {
				b.ReportMetric(r.published, "published")
				b.ReportMetric(r.drops, "dropped")
			}
			if r.errors > 0 {
				b.Errorf("%d requests failed (socket errors or non-2xx answers)", r.errors)
			}
		})
	}

	var t strings.Builder
	fmt.Fprintf(&t, "tap overhead: wrk -t2 -c50, %s per case in %d rounds, 1 KiB JSON, %d CPUs shared by every process\n",
		dur, rounds, runtime.NumCPU())
	fmt.Fprintf(&t, "%-13s %9s %9s %9s %10s %8s %8s %10s %9s | %9s %9s %9s %9s\n", "case", "req/s", "p50 µs", "p99 µs", "x go-proxy",
		"CPU µs", "NATS µs", "published", "dropped", "c1 p50", "c1 p99", "p50 added", "p99 added")
	for _, r := range cases {
		pub, drop, natsCPU := "-", "-", "-"
		if r.percent >= 0 {
			pub, drop = fmt.Sprint(int64(r.published)), fmt.Sprint(int64(r.drops))
			natsCPU = fmt.Sprintf("%.1f", perReq(r, r.natsCPU))
		}
		added50, added99 := "-", "-"
		if r != cases[0] {
			// What the hop adds to the direct latency, at low load.
			added50 = fmt.Sprint((r.idleP50 - cases[0].idleP50).Microseconds())
			added99 = fmt.Sprint((r.idleP99 - cases[0].idleP99).Microseconds())
		}
		fmt.Fprintf(&t, "%-13s %9.0f %9d %9d %10.2f %8.1f %8s %10s %9s | %9d %9d %9s %9s\n", r.name, r.rps,
			r.p50.Microseconds(), r.p99.Microseconds(), r.rps/base.rps, perReq(r, r.cpu), natsCPU, pub, drop,
			r.idleP50.Microseconds(), r.idleP99.Microseconds(), added50, added99)
	}
	fmt.Fprintf(&t, "CPU µs: CPU time per request of the process serving the case (the primary for direct, nginx's workers, the mirror); NATS µs: nats-server's\n"+
		"c1: wrk -t1 -c1 for %s (low load: one request at a time), and what the hop adds to the direct p50 and p99 there\n", idle)
	fmt.Fprintf(&t, "mirror peak RSS %.0f MiB", float64(rig.rss("VmHWM"))/(1<<20))
	// Printed, not logged: a parent benchmark's log is not shown without -v.
	fmt.Println(t.String())
}

// BenchmarkTapOutageMemory is the tap's memory bound when NATS is slow
// or down at full load: the real mirror binary at its default settings
// samples 100% of the requests while wrk drives it flat out
// (TAP_OUTAGE_DURATION per phase, default 20s) and its RSS is read from
// /proc every 100 ms. First NATS stalls (nats-server stopped with SIGSTOP:
// the connection stays up, nothing is acknowledged, the queue and the
// pending acks fill), then it resumes and the tap drains (and gives the
// memory back: it fails if more than half of what the stall took is still
// held TAP_OUTAGE_IDLE after the drain); then NATS is
// down (killed), and, TAP_OUTAGE_IDLE after the load (default 10s), the
// RSS is read again: what the outage took is given back. It fails when a
// peak reaches TAP_OUTAGE_MAX_RSS_MIB (default 128) or a request fails.
//
//	go test -run '^$' -bench TapOutageMemory -benchtime 1x
func BenchmarkTapOutageMemory(b *testing.B) {
	dur := benchEnvDuration(b, "TAP_OUTAGE_DURATION", 20*time.Second)
	idle := benchEnvDuration(b, "TAP_OUTAGE_IDLE", 10*time.Second)
	maxMiB := 128.0
	if v := os.Getenv("TAP_OUTAGE_MAX_RSS_MIB"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatalf("TAP_OUTAGE_MAX_RSS_MIB %q: %v", v, err)
		}
		maxMiB = f
	}
	wrkBin := benchTool(b, "wrk")
	rig := newTapRig(b)
	rig.setPercent(100)
	warm := runWrk(b, wrkBin, rig.mirror+"/api/orders/42", 3*time.Second)
	rig.drained()
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	before := rig.rss("VmRSS")

	// phase runs wrk for dur against the tap and returns its result and the
	// peak RSS seen meanwhile.
	phase := func(name string) (wrkResult, int64) {
		var peak int64
		stop := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				peak = max(peak, rig.rss("VmRSS"))
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
		load := runWrk(b, wrkBin, rig.mirror+"/api/orders/42", dur)
		rig.profile("heap-"+name, 0)
		close(stop)
		sampler.Wait()
		if load.errors > 0 {
			b.Errorf("%d requests failed while NATS was %s: the tap must serve without it", load.errors, name)
		}
		if mib(peak) >= maxMiB {
			b.Errorf("the mirror's RSS reached %.1f MiB while NATS was %s, over the %.0f MiB bound", mib(peak), name, maxMiB)
		}
		return load, peak
	}
	dropped := func() float64 { return rig.metric(metricPrefix + "envelopes_dropped_total") }

	d0 := dropped()
	if err := rig.nats.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		b.Fatal(err)
	}
	stalled, stalledPeak := phase("stalled")
	queued, queueBytes, pending := rig.metric(metricPrefix+"queue_depth"), rig.metric(metricPrefix+"queue_bytes"),
		rig.metric(metricPrefix+"publish_pending")
	if err := rig.nats.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		b.Fatal(err)
	}
	rig.drained()
	time.Sleep(idle) // memory back before the next phase
	d1 := dropped()
	beforeDown := rig.rss("VmRSS")
	if beforeDown > before+(stalledPeak-before)/2 {
		b.Errorf("the backlog drained, yet the tap keeps %.1f MiB (%.1f MiB before NATS stalled, %.1f at the peak)",
			mib(beforeDown), mib(before), mib(stalledPeak))
	}

	rig.nats.stop()
	down, downPeak := phase("down")
	atEnd := rig.rss("VmRSS")
	time.Sleep(idle) // the measure: what the tap keeps once the load is gone
	after := rig.rss("VmRSS")
	d2 := dropped()

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(mib(stalledPeak), "stalled-peak-RSS-MiB")
	b.ReportMetric(mib(downPeak), "down-peak-RSS-MiB")
	b.ReportMetric(mib(after), "idle-RSS-MiB")
	fmt.Printf("tap memory at 100%% sampling, wrk -t2 -c50 for %s per phase (warm-up with NATS: %.0f req/s, RSS then %.1f MiB)\n"+
		"  NATS stalled (SIGSTOP): peak RSS %.1f MiB; at the end %.0f envelopes queued (%.1f MiB of bodies), %.0f awaiting acks; %.0f req/s, %.0f envelopes dropped\n"+
		"  NATS back, drained, %s later: RSS %.1f MiB\n"+
		"  NATS down (killed):     peak RSS %.1f MiB, %.1f MiB at the end of the load, %.1f MiB %s later; %.0f req/s, %.0f envelopes dropped\n",
		dur, warm.rps(), mib(before), mib(stalledPeak), queued, queueBytes/(1<<20), pending, stalled.rps(), d1-d0,
		idle, mib(beforeDown), mib(downPeak), mib(atEnd), mib(after), idle, down.rps(), d2-d1)
}

func benchEnvDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s %q: a positive duration (15s)", name, v)
	}
	return d
}

// benchTool finds a load or peer tool installed by `make deps`.
func benchTool(b *testing.B, name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/sbin/" + name; fileExists(p) {
		return p
	}
	b.Fatalf("%s is not installed: run `make deps`", name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// tapRig is the processes of a tap benchmark: the primary, nats-server
// with JetStream, and the mirror binary in front of the primary with one
// launch of its service, whose sampling setPercent changes.
type tapRig struct {
	b                *testing.B
	dir              string
	primary, mirror  string // base URLs
	admin            string // the mirror's admin host:port
	nats, mirrorProc *benchProc
	primaryProc      *benchProc
	store            *launch.Store
	launchID         string
	sampledAt        float64
}

func newTapRig(b *testing.B) *tapRig {
	rig := &tapRig{b: b, dir: b.TempDir(), sampledAt: -1}
	natsBin := "../../.local/bin/nats-server"
	if !fileExists(natsBin) {
		natsBin = benchTool(b, "nats-server")
	}
	// The real binary, with ./cmd/mirror/default.pgo as `go build` uses it.
	mirrorBin := filepath.Join(rig.dir, "mirror")
	// TAP_BENCH_BUILD_FLAGS adds go build flags (-pgo=off: without the profile).
	build := exec.Command("go", append(append([]string{"build"}, strings.Fields(os.Getenv("TAP_BENCH_BUILD_FLAGS"))...), "-o", mirrorBin, "./cmd/mirror")...)
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/mirror: %v\n%s", err, out)
	}
	rig.primary, rig.primaryProc = rig.helper("primary", "primary", "")

	natsPort := testenv.FreePort(b)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	rig.nats = startBenchProc(b, rig.dir, "nats-server", nil, natsBin, testenv.NATSServerArgs(b, rig.dir, natsPort)...)
	waitHTTP(b, "nats-server", "tcp://127.0.0.1:"+strconv.Itoa(natsPort))
	nc, err := nats.Connect(natsURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := launch.OpenBucket(testenv.Context(b), js)
	if err != nil {
		b.Fatal(err)
	}
	rig.store = launch.NewStore(kv)
	l, err := rig.store.Create(testenv.Context(b), launch.Launch{
		Name: "bench", Service: "bench", ShadowURL: "http://shadow.invalid", SamplePercent: 0,
	})
	if err != nil {
		b.Fatal(err)
	}
	rig.launchID = l.ID

	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	rig.admin = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	rig.mirror = "http://" + addr
	rig.mirrorProc = startBenchProc(b, rig.dir, "mirror", []string{
		"MIRROR_PRIMARY_URL=" + rig.primary, "MIRROR_ADDR=" + addr, "MIRROR_ADMIN_ADDR=" + rig.admin,
		"MIRROR_SERVICE=bench", "NATS_URL=" + natsURL, "LOG_LEVEL=warn",
	}, mirrorBin)
	testenv.CheckFor(b, 30*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get("http://" + rig.admin + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("mirror /healthz answers %d", resp.StatusCode)
		}
		return nil
	})
	return rig
}

// helper starts a process of this test binary (TestBenchProcess) serving
// role on a free port and returns its base URL.
func (rig *tapRig) helper(name, role, target string) (string, *benchProc) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(rig.b))
	env := []string{"TAP_BENCH_ROLE=" + role, "TAP_BENCH_ADDR=" + addr, "TAP_BENCH_TARGET=" + target}
	if role == "proxy" {
		env = append(env, "GOGC=400")
	}
	p := startBenchProc(rig.b, rig.dir, name, env, os.Args[0], "-test.run=^TestBenchProcess$")
	waitHTTP(rig.b, name, "http://"+addr)
	return "http://" + addr, p
}

// nginx starts nginx-light from a generated config with two servers: a
// plain proxy to the primary and one that also mirrors every request to
// shadow (the mirror module), both over keep-alive upstream connections.
func (rig *tapRig) nginx(shadow string) (proxy, mirror string, p *benchProc) {
	bin := benchTool(rig.b, "nginx")
	dir := filepath.Join(rig.dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		rig.b.Fatal(err)
	}
	p1, p2 := testenv.FreePort(rig.b), testenv.FreePort(rig.b)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers write to this temp dir
	}
	hostPort := func(u string) string { return strings.TrimPrefix(u, "http://") }
	conf := fmt.Sprintf(`%[1]s
worker_processes auto;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  upstream primary { server %[3]s; keepalive 256; }
  upstream shadow { server %[4]s; keepalive 256; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  server {
    listen 127.0.0.1:%[5]d;
    location / { proxy_pass http://primary; }
  }
  server {
    listen 127.0.0.1:%[6]d;
    location / { mirror /mirror; proxy_pass http://primary; }
    location = /mirror { internal; proxy_pass http://shadow$request_uri; }
  }
}
`, user, dir, hostPort(rig.primary), hostPort(shadow), p1, p2)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		rig.b.Fatal(err)
	}
	p = startBenchProc(rig.b, rig.dir, "nginx", nil, bin, "-p", dir+"/", "-c", confPath, "-e", dir+"/error.log")
	proxy, mirror = fmt.Sprintf("http://127.0.0.1:%d", p1), fmt.Sprintf("http://127.0.0.1:%d", p2)
	waitHTTP(rig.b, "nginx", proxy)
	waitHTTP(rig.b, "nginx", mirror)
	return proxy, mirror, p
}

// setPercent sets the launch's sampling and waits until the tap applies
// it, as its counters show: probes are all sampled at 100%, none at 0%,
// some but not all otherwise.
func (rig *tapRig) setPercent(p float64) {
	b := rig.b
	if rig.sampledAt == p {
		return
	}
	if _, err := rig.store.Update(testenv.Context(b), rig.launchID, func(l *launch.Launch) error {
		l.SamplePercent = p
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	const probes = 200
	testenv.CheckFor(b, 10*time.Second, 20*time.Millisecond, func() error {
		before := rig.metric(metricPrefix + "envelopes_sampled_total")
		for range probes {
			resp, err := http.Get(rig.mirror + "/probe")
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		n := rig.metric(metricPrefix+"envelopes_sampled_total") - before
		if (p == 0 && n == 0) || (p == 100 && n == probes) || (p > 0 && p < 100 && n > 0 && n < probes) {
			return nil
		}
		return fmt.Errorf("%v of %d probes sampled: the tap has not applied %v%% yet", n, probes, p)
	})
	rig.drained()
	rig.sampledAt = p
}

// drained waits until the tap has no envelope queued or awaiting an ack.
func (rig *tapRig) drained() {
	testenv.CheckFor(rig.b, 60*time.Second, 20*time.Millisecond, func() error {
		q, p := rig.metric(metricPrefix+"queue_depth"), rig.metric(metricPrefix+"publish_pending")
		if q > 0 || p > 0 {
			return fmt.Errorf("tap busy: %v queued, %v pending acks", q, p)
		}
		return nil
	})
}

// metric reads one metric (summed over its labels) from the tap's /metrics.
func (rig *tapRig) metric(name string) float64 {
	var sum float64
	for _, line := range strings.Split(testenv.Metrics(rig.b, rig.admin), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
		if err != nil {
			rig.b.Fatalf("metric line %q: %v", line, err)
		}
		sum += f
	}
	return sum
}

// profile saves a profile of the mirror (from its /debug/pprof/) in the
// directory TAP_BENCH_PROFILE names, when it is set: a CPU profile over
// dur, or the heap when dur is 0. Merged with `go tool pprof -proto`, the
// CPU profiles of the mirror cases are the PGO profile of
// cmd/mirror/default.pgo.
func (rig *tapRig) profile(name string, dur time.Duration) {
	dir := os.Getenv("TAP_BENCH_PROFILE")
	if dir == "" {
		return
	}
	url := "http://" + rig.admin + "/debug/pprof/heap"
	if dur > 0 {
		url = fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", rig.admin, max(1, int(dur/time.Second)-1))
	}
	resp, err := http.Get(url)
	if err != nil {
		rig.b.Errorf("profile %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s answered %d: %s", url, resp.StatusCode, data)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name+".pprof"), data, 0o644)
	}
	if err != nil {
		rig.b.Errorf("profile %s: %v", name, err)
	}
}

// rss reads a memory field (VmRSS, VmHWM) of the mirror process, in bytes.
func (rig *tapRig) rss(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", rig.mirrorProc.cmd.Process.Pid))
	if err != nil {
		rig.b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				rig.b.Fatalf("%s line %q: %v", field, line, err)
			}
			return kb << 10
		}
	}
	rig.b.Fatalf("no %s in /proc/<mirror>/status", field)
	return 0
}

// benchProc is a process a benchmark started; it is stopped (SIGTERM, then
// SIGKILL) when the benchmark ends, and its output is kept in a log file
// printed when the benchmark fails.
type benchProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startBenchProc(b *testing.B, dir, name string, env []string, bin string, args ...string) *benchProc {
	p := &benchProc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	// The processes run at their own defaults: no GC setting of the
	// caller's environment leaks into them.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		b.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	b.Cleanup(func() {
		p.stop()
		if b.Failed() {
			if out, err := os.ReadFile(p.log); err == nil && len(out) > 0 {
				b.Logf("%s log (last 2000 bytes):\n%s", name, tail(out, 2000))
			}
		}
	})
	return p
}

// cpuTime is the CPU time (user and system) the process and its children
// (nginx's workers) have used so far.
func (p *benchProc) cpuTime() time.Duration {
	d, _ := testenv.ProcessCPU(p.cmd.Process.Pid, true) // 0 once it is gone
	return d
}

func (p *benchProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// waitHTTP waits until url (http:// or tcp://) accepts connections.
func waitHTTP(b *testing.B, name, url string) {
	hostPort := url[strings.Index(url, "://")+3:]
	testenv.CheckFor(b, 30*time.Second, 20*time.Millisecond, func() error {
		c, err := net.DialTimeout("tcp", hostPort, time.Second)
		if err != nil {
			return fmt.Errorf("%s does not accept connections: %w", name, err)
		}
		return c.Close()
	})
}

// TestBenchProcess is not a test: it is a process of the tap benchmarks
// (started by them from this test binary, TAP_BENCH_ROLE set), serving
// TAP_BENCH_ADDR until killed as
//
//   - primary: the 1 KiB JSON document of benchPrimary;
//   - proxy: the tuned httputil.ReverseProxy the tap is measured against,
//     to TAP_BENCH_TARGET: 256 idle connections per host, a 32 KiB buffer
//     pool (and GOGC=400, set by the benchmark).
func TestBenchProcess(t *testing.T) {
	role := os.Getenv("TAP_BENCH_ROLE")
	if role == "" {
		t.Skip("a process of the tap benchmarks, started by them")
	}
	var h http.Handler
	switch role {
	case "primary":
		h = benchPrimary()
	case "proxy":
		h = tunedProxy(os.Getenv("TAP_BENCH_TARGET"))
	default:
		t.Fatalf("TAP_BENCH_ROLE %q", role)
	}
	srv := &http.Server{Addr: os.Getenv("TAP_BENCH_ADDR"), Handler: h, ReadHeaderTimeout: 10 * time.Second}
	t.Fatal(srv.ListenAndServe())
}

// tunedProxy is the baseline of the tap's benchmarks: httputil.ReverseProxy
// as PLATFORM-NOTES tunes it (256 idle connections per host, a 32 KiB
// buffer pool; the process runs with GOGC=400).
func tunedProxy(target string) http.Handler {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	return &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = pr.In.Host },
		Transport:  &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true, ForceAttemptHTTP2: true},
		BufferPool: &bufferPool{},
	}
}

// wrkResult is one wrk run.
type wrkResult struct {
	requests, errors int64
	elapsed          time.Duration
	p50, p99         time.Duration
}

func (w wrkResult) rps() float64 { return float64(w.requests) / w.elapsed.Seconds() }

// runWrk runs wrk -t2 -c50 --latency against url for dur and parses its
// report: requests, duration, the 50th and 99th latency percentiles, and
// socket errors and non-2xx/3xx answers as errors.
func runWrk(b *testing.B, bin, url string, dur time.Duration) wrkResult {
	return runWrkWith(b, bin, url, dur, 2, 50)
}

// runWrkWith runs wrk with threads and conns.
func runWrkWith(b *testing.B, bin, url string, dur time.Duration, threads, conns int) wrkResult {
	secs := max(1, int(dur.Round(time.Second)/time.Second))
	out, err := exec.Command(bin, fmt.Sprintf("-t%d", threads), fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs), "--latency", url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	var w wrkResult
	var ok [3]bool
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "50%":
			w.p50, ok[0] = parseWrkDuration(b, f[1]), true
		case len(f) == 2 && f[0] == "99%":
			w.p99, ok[1] = parseWrkDuration(b, f[1]), true
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				b.Fatalf("wrk line %q: %v", line, err)
			}
			w.requests, w.elapsed, ok[2] = n, parseWrkDuration(b, strings.TrimSuffix(f[3], ",")), true
		case strings.HasPrefix(line, "  Socket errors:"):
			for _, kv := range strings.Split(strings.TrimPrefix(line, "  Socket errors:"), ",") {
				if g := strings.Fields(kv); len(g) == 2 {
					n, _ := strconv.ParseInt(g[1], 10, 64)
					w.errors += n
				}
			}
		case strings.HasPrefix(line, "  Non-2xx or 3xx responses:"):
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "  Non-2xx or 3xx responses:")), 10, 64)
			w.errors += n
		}
	}
	if !ok[0] || !ok[1] || !ok[2] || w.requests == 0 {
		b.Fatalf("wrk report not understood:\n%s", out)
	}
	return w
}

// parseWrkDuration reads wrk's durations: 1.23ms, 456.00us, 5.00s, 1.5m.
func parseWrkDuration(b *testing.B, s string) time.Duration {
	d, err := time.ParseDuration(strings.Replace(s, "us", "µs", 1))
	if err != nil {
		b.Fatalf("wrk duration %q: %v", s, err)
	}
	return d
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// benchPrimary answers every request with the same 1 KiB JSON document.
func benchPrimary() http.Handler {
	var sb strings.Builder
	sb.WriteString(`{"id":42,"status":"shipped","items":[`)
	for i := 0; sb.Len() < 1000; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"sku":"SKU-%04d","qty":%d}`, i, i%5+1)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	for len(body) < 1024 {
		body = append(body[:len(body)-1], ' ', '}')
	}
	length := fmt.Sprint(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
}

func startBenchServer(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

type benchEnv struct {
	url   string
	js    jetstream.JetStream
	store *launch.Store
}

func benchNATS(b *testing.B) benchEnv {
	srv := testenv.StartJetStream(b)
	_, js := testenv.Connect(b, srv.URL())
	kv, err := launch.OpenBucket(testenv.Context(b), js)
	if err != nil {
		b.Fatal(err)
	}
	return benchEnv{url: srv.URL(), js: js, store: launch.NewStore(kv)}
}

// BenchmarkSampleDecision is the cost the tap adds to every request before
// proxying: loading the routing table and deciding, per launch, on the
// method, the path filters and either the user's sticky bucket or a random
// draw; and with a live launch, whether its new version serves the request.
// The routing tables are built by the tap's own builder from snapshots made
// here, as the routes loop builds them from the watcher's:
//
//	go test -run '^$' -bench SampleDecision -benchmem
func BenchmarkSampleDecision(b *testing.B) {
	s, err := New(Config{PrimaryURL: "http://127.0.0.1:1", Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Service: "bench"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.ln.Close(); s.admin.Close() })
	ids := 0
	mk := func(percent float64, sticky string, include, exclude []string) *launch.Launch {
		ids++
		return &launch.Launch{ID: fmt.Sprintf("0197a000-0000-7000-8000-%012d", ids), Service: "bench",
			ShadowURL: "http://127.0.0.1:2", SamplePercent: percent, StickyKey: sticky, Methods: launch.DefaultMethods,
			IncludePaths: include, ExcludePaths: exclude, Status: launch.StatusActive, Revision: uint64(ids)}
	}
	live := func(l *launch.Launch, percent float64) *launch.Launch {
		l.Status, l.LivePercent, l.SamplePercent = launch.StatusPromoting, percent, 0
		return l
	}
	req := httptest.NewRequest("GET", "/api/orders/42?page=2&user=u-1234567", nil)
	req.Header.Set("X-User-Id", "u-1234567")
	req.Header.Set("Cookie", "theme=dark; session=u-1234567; lang=en")
	req.Header.Set("User-Agent", "bench")
	for _, c := range []struct {
		name           string
		mirrored, live []*launch.Launch
	}{
		{"no-launch", nil, nil},
		{"one-launch-10%", []*launch.Launch{mk(10, "", nil, nil)}, nil},
		{"sticky-header-10%", []*launch.Launch{mk(10, "header:X-User-Id", nil, nil)}, nil},
		{"sticky-cookie-10%", []*launch.Launch{mk(10, "cookie:session", nil, nil)}, nil},
		{"sticky-query-10%", []*launch.Launch{mk(10, "query:user", nil, nil)}, nil},
		{"sticky-header-10%-filters", []*launch.Launch{mk(10, "header:X-User-Id", []string{"/api/**"}, []string{"/api/admin/**"})}, nil},
		{"live-sticky-header-30%", nil, []*launch.Launch{live(mk(0, "header:X-User-Id", nil, nil), 30)}},
		{"live-30%+two-mirrored", []*launch.Launch{mk(10, "header:X-User-Id", nil, nil), mk(5, "", nil, nil)},
			[]*launch.Launch{live(mk(0, "header:X-User-Id", nil, nil), 30)}},
	} {
		snap := &launch.Snapshot{ByID: map[string]*launch.Launch{},
			Mirrored: map[string][]*launch.Launch{"bench": c.mirrored}, Live: map[string][]*launch.Launch{"bench": c.live}}
		for _, l := range append(slices.Clone(c.mirrored), c.live...) {
			snap.ByID[l.ID] = l
		}
		s.setRoutes(s.builder.build(snap))
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.currentRoutes().decide(req, s.stats, true)
			}
		})
	}
	s.builder.closeTargets()
}

// BenchmarkTrustChecks is what every request pays for the trust checks
// (trust.go, framing.go) when it triggers none of them: the replay marker
// and forwarding header lookups, and the framing guard's scan of a
// typical request's header block.
func BenchmarkTrustChecks(b *testing.B) {
	s := &Service{stats: newMetrics(prometheus.NewRegistry()), protection: &protection{}}
	req := httptest.NewRequest("GET", "http://shop.example/api/users/42?expand=orders", nil)
	for _, h := range [][2]string{{"Accept", "application/json"}, {"Accept-Encoding", "gzip"}, {"User-Agent", "bench/1.0"},
		{"Cookie", "theme=dark; session=u-1234567; lang=en"}, {"X-User-Id", "u-1234567"}, {"Cache-Control", "no-cache"}} {
		req.Header.Set(h[0], h[1])
	}
	raw := []byte("GET /api/users/42?expand=orders HTTP/1.1\r\nHost: shop.example\r\nAccept: application/json\r\n" +
		"Accept-Encoding: gzip\r\nUser-Agent: bench/1.0\r\nCookie: theme=dark; session=u-1234567; lang=en\r\n" +
		"X-User-Id: u-1234567\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n")
	b.Run("markers+forwarding", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s.replay(req) {
				b.Fatal("a replay")
			}
			s.distrustForwarding(req)
		}
	})
	b.Run("framing-scan", func(b *testing.B) {
		b.ReportAllocs()
		f := frame{start: true}
		for b.Loop() {
			if r := f.scan(raw); r != "" {
				b.Fatal(r)
			}
		}
	})
}

// BenchmarkProxyPath is one request's cost in the proxy itself, in
// process over loopback to a real primary (1 KiB JSON), with its
// allocations: the tuned httputil.ReverseProxy the tap is measured
// against, and the tap's own paths: unsampled (forward: the direct
// HTTP/1.1 path without ReverseProxy), sampled at 100% (capture and
// envelope queued; the queue is drained as publishers would, without
// encoding), and an unsampled POST (ReverseProxy over http.Transport).
// The recorder and request the benchmark makes count in every case.
//
//	go test -run '^$' -bench ProxyPath -benchmem
func BenchmarkProxyPath(b *testing.B) {
	primary := startBenchServer(b, benchPrimary())
	s, err := New(Config{PrimaryURL: primary, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Service: "bench"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.ln.Close(); s.admin.Close(); s.transport.CloseIdleConnections() })
	stop := make(chan struct{})
	var drain sync.WaitGroup
	drain.Go(func() {
		for {
			select {
			case q := <-s.queue:
				s.release(1, q.charge)
			case <-stop:
				return
			}
		}
	})
	b.Cleanup(func() { close(stop); drain.Wait() })
	l := &launch.Launch{ID: "0197a000-0000-7000-8000-000000000001", Service: "bench", ShadowURL: "http://127.0.0.1:2",
		SamplePercent: 100, Methods: launch.DefaultMethods, Status: launch.StatusActive, Revision: 1}
	sampled := s.builder.build(&launch.Snapshot{ByID: map[string]*launch.Launch{l.ID: l},
		Mirrored: map[string][]*launch.Launch{"bench": {l}}})
	b.Cleanup(s.builder.closeTargets)
	none := &routes{}
	var sampledRan bool

	body := strings.Repeat("x", 512)
	for _, c := range []struct {
		name   string
		h      http.Handler
		rt     *routes
		method string
	}{
		{"reverse-proxy", tunedProxy(primary), none, "GET"},
		{"tap-unsampled", s, none, "GET"},
		{"tap-sampled-100%", s, sampled, "GET"},
		{"reverse-proxy-POST", tunedProxy(primary), none, "POST"},
		{"tap-unsampled-POST", s, none, "POST"},
	} {
		s.setRoutes(c.rt)
		b.Run(c.name, func(b *testing.B) {
			sampledRan = sampledRan || c.rt == sampled
			b.ReportAllocs()
			for b.Loop() {
				var rb io.Reader
				if c.method == "POST" {
					rb = strings.NewReader(body)
				}
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, httptest.NewRequest(c.method, "/api/orders/42?page=2", rb))
				if w.Code != http.StatusOK || w.Body.Len() < 1024 {
					b.Fatalf("status %d, %d bytes", w.Code, w.Body.Len())
				}
			}
		})
	}
	if st := s.Stats(); sampledRan && (st.Sampled == 0 || st.DroppedTotal() > 0) {
		b.Errorf("sampled %d, dropped %d: the sampled case did not capture every request", st.Sampled, st.DroppedTotal())
	}
}
