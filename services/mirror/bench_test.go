package mirror

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// BenchmarkTapOverhead measures, in one run and with the same load, the
// primary served directly, a plain tuned httputil.ReverseProxy (the same
// transport and buffer pool as the tap), and the tap at 0%, 10% and 100%
// sampling with an embedded JetStream storing the envelopes and a consumer
// acknowledging them. Load: 50 keep-alive clients in-process for a fixed
// duration per case (TAP_BENCH_DURATION, default 3s), 1 KiB JSON responses.
// Everything shares the machine's cores, so read the ratios to the plain
// proxy, not the absolute figures:
//
//	go test -run '^$' -bench TapOverhead -benchtime 1x
func BenchmarkTapOverhead(b *testing.B) {
	dur := 3 * time.Second
	if v := os.Getenv("TAP_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("TAP_BENCH_DURATION: %v", err)
		}
		dur = d
	}
	const clients = 50
	// As in the Dockerfile; the same for every case.
	defer debug.SetGCPercent(debug.SetGCPercent(400))

	primaryURL := startBenchServer(b, benchPrimary())
	target, _ := url.Parse(primaryURL)
	cfg := Config{PrimaryURL: primaryURL}.withDefaults()
	proxyURL := startBenchServer(b, &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
		Transport:  newTransport(cfg),
		BufferPool: &bufferPool{},
	})

	// NATS, the launch store and a consumer draining the envelope stream.
	e := benchNATS(b)
	var consumed atomic.Int64
	cons, err := e.js.CreateOrUpdateConsumer(testenv.Context(b), stream.EnvelopesStream, jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000,
	})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		consumed.Add(1)
		_ = m.Ack()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	s, err := New(Config{
		PrimaryURL: primaryURL, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Service: "bench",
		NATS: config.NATS{NATSURL: e.url},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	testenv.Run(b, s.Run)
	l, err := e.store.Create(testenv.Context(b), launch.Launch{
		Name: "bench", Service: "bench", ShadowURL: "http://shadow.invalid", SamplePercent: 0,
	})
	if err != nil {
		b.Fatal(err)
	}
	setPercent := func(b *testing.B, p float64) {
		if _, err := e.store.Update(testenv.Context(b), l.ID, func(l *launch.Launch) error {
			l.SamplePercent = p
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		testenv.CheckFor(b, 10*time.Second, 5*time.Millisecond, func() error {
			if got := s.routes.Load().snap; got != nil && got.ByID[l.ID] != nil && got.ByID[l.ID].SamplePercent == p {
				return nil
			}
			return errors.New("tap has not seen the new percentage")
		})
	}
	mirrorURL := "http://" + s.Addr()

	type result struct {
		name               string
		url                string
		percent            float64 // -1: not the tap
		lat                []time.Duration
		requests, errors   int64
		elapsed            time.Duration
		published, dropped uint64
		rps                float64
		p50, p99           time.Duration
	}
	cases := []*result{
		{name: "direct", url: primaryURL, percent: -1},
		{name: "proxy", url: proxyURL, percent: -1},
		{name: "mirror-0%", url: mirrorURL, percent: 0},
		{name: "mirror-10%", url: mirrorURL, percent: 10},
		{name: "mirror-100%", url: mirrorURL, percent: 100},
	}
	// The cases take turns in short rounds rather than one long run each,
	// so that a burst of other work on the machine does not land on one case.
	const rounds = 5
	for range rounds {
		for _, r := range cases {
			if r.percent >= 0 {
				setPercent(b, r.percent)
			}
			before := s.Stats()
			lat, failed, elapsed := runLoad(r.url+"/api/orders/42", clients, dur/rounds)
			r.lat = append(r.lat, lat...)
			r.requests += int64(len(lat))
			r.errors += failed
			r.elapsed += elapsed
			if r.percent >= 0 {
				// Let the pipeline and the consumer catch up, so that the
				// next case starts on an idle machine.
				testenv.CheckFor(b, 30*time.Second, 10*time.Millisecond, func() error {
					st := s.Stats()
					if st.QueueDepth > 0 || st.PendingAcks > 0 || uint64(consumed.Load()) < st.Published {
						return fmt.Errorf("pipeline busy: %+v, consumed %d", st, consumed.Load())
					}
					return nil
				})
				after := s.Stats()
				r.published += after.Published - before.Published
				r.dropped += after.DroppedTotal() - before.DroppedTotal()
			}
		}
	}
	for _, r := range cases {
		slices.Sort(r.lat)
		r.rps = float64(r.requests) / r.elapsed.Seconds()
		r.p50, r.p99 = percentile(r.lat, 0.50), percentile(r.lat, 0.99)
	}
	proxy := cases[1]

	// One sub-benchmark per case reports what was measured above.
	for _, r := range cases {
		b.Run(r.name, func(b *testing.B) {
			b.ReportMetric(0, "ns/op") // fixed-duration runs: ns/op says nothing
			b.ReportMetric(r.rps, "req/s")
			b.ReportMetric(float64(r.p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs")
			b.ReportMetric(r.rps/proxy.rps, "req/s-x-proxy")
			b.ReportMetric(float64(r.p50)/float64(proxy.p50), "p50-x-proxy")
			b.ReportMetric(float64(r.p99)/float64(proxy.p99), "p99-x-proxy")
			if r.percent >= 0 {
				b.ReportMetric(float64(r.published), "published")
				b.ReportMetric(float64(r.dropped), "dropped")
			}
			if r.errors > 0 {
				b.Errorf("%d requests failed", r.errors)
			}
		})
	}

	var t strings.Builder
	fmt.Fprintf(&t, "tap overhead: %d keep-alive clients, %s per case in %d rounds, 1 KiB JSON, GOGC=400, GOMAXPROCS=%d\n",
		clients, dur, rounds, runtime.GOMAXPROCS(0))
	fmt.Fprintf(&t, "%-12s %10s %8s %8s %8s %8s %8s %10s %9s\n", "case", "req/s", "x proxy", "p50 µs", "x proxy", "p99 µs", "x proxy", "published", "dropped")
	ratio := func(a, b float64) string { return fmt.Sprintf("%.2f", a/b) }
	for _, r := range cases {
		pub, drop := "-", "-"
		if r.percent >= 0 {
			pub, drop = fmt.Sprint(r.published), fmt.Sprint(r.dropped)
		}
		fmt.Fprintf(&t, "%-12s %10.0f %8s %8d %8s %8d %8s %10s %9s\n", r.name,
			r.rps, ratio(r.rps, proxy.rps),
			r.p50.Microseconds(), ratio(float64(r.p50), float64(proxy.p50)),
			r.p99.Microseconds(), ratio(float64(r.p99), float64(proxy.p99)),
			pub, drop)
	}
	fmt.Fprintf(&t, "envelopes consumed from the stream: %d", consumed.Load())
	// Printed, not logged: a parent benchmark's log is not shown without -v.
	fmt.Println(t.String())
}

// runLoad runs clients keep-alive loops against url for dur (after a short
// warm-up) and returns every request's latency, the failures and the time
// measured.
func runLoad(url string, clients int, dur time.Duration) ([]time.Duration, int64, time.Duration) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var failed atomic.Int64
	var stop atomic.Bool
	var record atomic.Bool
	lats := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	buf := make([][]byte, clients)
	for i := range clients {
		buf[i] = make([]byte, 4096)
		lats[i] = make([]time.Duration, 0, 1<<15)
		wg.Go(func() {
			for !stop.Load() {
				start := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, err = io.CopyBuffer(io.Discard, resp.Body, buf[i])
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				if record.Load() {
					lats[i] = append(lats[i], time.Since(start))
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // warm-up: connections, pools, caches
	record.Store(true)
	begin := time.Now()
	time.Sleep(dur)
	record.Store(false)
	elapsed := time.Since(begin)
	stop.Store(true)
	wg.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return all, failed.Load(), elapsed
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
