package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// BenchmarkRollbackPropagation measures how long a rollback takes to reach
// running taps. Three taps run in-process, each with its own NATS
// connection and launch watch on one embedded JetStream. Each round makes a
// launch mirrored (even rounds) or live at 50% (odd rounds), waits until
// every tap routes it, then rolls it back with launch.Store.Update, as the
// reporter's API does, and measures for each tap the time from Update
// returning (the API answering) until the tap's routing table neither
// mirrors nor routes the launch. The tap is notified by its watcher (no
// polling), and requests are routed by the watcher's snapshot from the
// moment it is swapped in, so the figure is an upper bound for requests.
//
// Sub-benchmarks: idle taps, and taps serving a steady load (16 paced
// keep-alive clients spread over the three, ROLLBACK_BENCH_RPS requests per
// second in all, default 3000, each request sampled or routed live by the
// round's launch; the load generator runs on the same cores). Rounds per
// case: ROLLBACK_BENCH_ROUNDS (default 100).
//
//	go test -run '^$' -bench RollbackPropagation -benchtime 1x
func BenchmarkRollbackPropagation(b *testing.B) {
	rounds := envInt(b, "ROLLBACK_BENCH_ROUNDS", 100, 1)
	rps := envInt(b, "ROLLBACK_BENCH_RPS", 3000, 16)
	const taps = 3
	ctx := testenv.Context(b)
	e := benchNATS(b)
	primaryURL := startBenchServer(b, benchPrimary())
	shadowURL := startBenchServer(b, benchPrimary())
	var ms []*Service
	for i := range taps {
		s, err := New(Config{
			PrimaryURL: primaryURL, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Service: "bench",
			TapID: "tap-" + strconv.Itoa(i), NATS: config.NATS{NATSURL: e.url},
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		testenv.Run(b, s.Run)
		ms = append(ms, s)
	}
	for _, s := range ms {
		testenv.CheckFor(b, 10*time.Second, 5*time.Millisecond, func() error { return s.checkLaunches(nil) })
	}

	type result struct {
		name   string
		perTap [taps][]time.Duration
		all    []time.Duration
		// fromCall: from calling Update rather than from its return.
		fromCall []time.Duration
		updates  []time.Duration
		load     int64
		elapsed  time.Duration
	}
	var results []*result
	for _, loaded := range []bool{false, true} {
		r := &result{name: "idle"}
		var stop atomic.Bool
		var wg sync.WaitGroup
		var served atomic.Int64
		if loaded {
			r.name = "loaded"
			tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			const clients = 16
			every := time.Duration(clients) * time.Second / time.Duration(rps)
			for c := range clients {
				url := "http://" + ms[c%taps].Addr() + "/api/orders/42"
				wg.Go(func() {
					buf := make([]byte, 4096)
					tick := time.NewTicker(every)
					defer tick.Stop()
					for i := 0; !stop.Load(); i++ {
						<-tick.C
						req, _ := http.NewRequest("GET", url, nil)
						req.Header.Set(userHeader, "user-"+strconv.Itoa(c*1000+i%1000))
						resp, err := client.Do(req)
						if err != nil {
							continue
						}
						_, _ = io.CopyBuffer(io.Discard, resp.Body, buf)
						resp.Body.Close()
						served.Add(1)
					}
				})
			}
			defer tr.CloseIdleConnections()
		}
		if loaded {
			time.Sleep(300 * time.Millisecond) // connections and pools warm
		}
		served.Store(0)
		begin := time.Now()
		for round := range rounds {
			// Rounds are spaced so that the load runs through them, not
			// only around them.
			time.Sleep(10 * time.Millisecond)
			live := round%2 == 1
			d, upd, err := rollbackRound(ctx, e, ms, shadowURL, live, fmt.Sprintf("%s %d", r.name, round))
			if err != nil {
				stop.Store(true)
				wg.Wait()
				b.Fatal(err)
			}
			for i, x := range d {
				r.perTap[i] = append(r.perTap[i], max(x-upd, 0))
				r.all = append(r.all, max(x-upd, 0))
				r.fromCall = append(r.fromCall, x)
			}
			r.updates = append(r.updates, upd)
		}
		r.elapsed = time.Since(begin)
		stop.Store(true)
		wg.Wait()
		r.load = served.Load()
		results = append(results, r)
	}

	ms2 := func(d time.Duration) float64 { return float64(d) / 1e6 }
	for _, r := range results {
		slices.Sort(r.all)
		b.Run(r.name, func(b *testing.B) {
			b.ReportMetric(0, "ns/op") // fixed rounds: ns/op says nothing
			b.ReportMetric(ms2(percentile(r.all, 0.50)), "p50-ms")
			b.ReportMetric(ms2(percentile(r.all, 0.99)), "p99-ms")
			b.ReportMetric(ms2(r.all[len(r.all)-1]), "max-ms")
			slices.Sort(r.fromCall)
			b.ReportMetric(ms2(percentile(r.fromCall, 0.99)), "p99-ms-from-call")
		})
	}

	var t strings.Builder
	fmt.Fprintf(&t, "rollback propagation: %d taps in-process on one embedded JetStream, %d rounds per case (mirrored and live launches alternating), GOMAXPROCS=%d\n",
		taps, rounds, runtime.GOMAXPROCS(0))
	fmt.Fprintf(&t, "time from launch.Store.Update returning until the tap's routing table drops the launch, in ms\n")
	fmt.Fprintf(&t, "%-8s %-8s %8s %8s %8s %8s\n", "case", "tap", "p50", "p90", "p99", "max")
	row := func(c, tap string, d []time.Duration) {
		d = slices.Clone(d)
		slices.Sort(d)
		fmt.Fprintf(&t, "%-8s %-8s %8.2f %8.2f %8.2f %8.2f\n", c, tap,
			ms2(percentile(d, 0.5)), ms2(percentile(d, 0.9)), ms2(percentile(d, 0.99)), ms2(d[len(d)-1]))
	}
	for _, r := range results {
		for i := range taps {
			row(r.name, "tap-"+strconv.Itoa(i), r.perTap[i])
		}
		row(r.name, "all", r.all)
		row(r.name, "from-call", r.fromCall)
		row(r.name, "update", r.updates)
		if r.load > 0 {
			fmt.Fprintf(&t, "%-8s %d requests served by the taps during the rounds (%.0f/s)\n", r.name, r.load, float64(r.load)/r.elapsed.Seconds())
		}
	}
	fmt.Fprintf(&t, "(from-call: all taps, from calling Update instead of from its return; update: how long launch.Store.Update took, a read and a compare-and-set in the KV bucket. A tap often sees the change before the writer has its ack: 0 from the return.)")
	fmt.Println(t.String())
}

// rollbackRound makes one launch mirrored or live on every tap, rolls it
// back, and returns for each tap the time from calling Update until the
// tap no longer routes the launch, and how long Update took.
func rollbackRound(ctx context.Context, e benchEnv, ms []*Service, shadowURL string, live bool, name string) ([]time.Duration, time.Duration, error) {
	l, err := e.store.Create(ctx, launch.Launch{Name: name, Service: "bench", ShadowURL: shadowURL,
		SamplePercent: 50, StickyKey: "header:" + userHeader})
	if err != nil {
		return nil, 0, err
	}
	if live {
		if l, err = e.store.Update(ctx, l.ID, func(l *launch.Launch) error { return l.SetLive(50) }); err != nil {
			return nil, 0, err
		}
	}
	for _, s := range ms {
		if _, err := routingUntil(s, l.ID, 10*time.Second, nil, func(r LaunchRouting) bool {
			return r.Revision >= l.Revision && r.Live == live && r.Mirrored == !live
		}); err != nil {
			return nil, 0, err
		}
	}

	seen := make([]time.Time, len(ms))
	errs := make([]error, len(ms))
	var armed, done sync.WaitGroup
	for i, s := range ms {
		armed.Add(1)
		done.Go(func() {
			seen[i], errs[i] = routingUntil(s, l.ID, 10*time.Second, armed.Done, func(r LaunchRouting) bool {
				return !r.Live && !r.Mirrored
			})
		})
	}
	armed.Wait() // every waiter has checked once and is waiting for a change
	start := time.Now()
	if _, err := e.store.Update(ctx, l.ID, rollback); err != nil {
		return nil, 0, err
	}
	upd := time.Since(start)
	done.Wait()
	out := make([]time.Duration, len(ms))
	for i := range ms {
		if errs[i] != nil {
			return nil, 0, fmt.Errorf("tap %d: %w", i, errs[i])
		}
		out[i] = seen[i].Sub(start)
	}
	return out, upd, nil
}

// routingUntil waits, notified by the tap on each routing table change,
// until ok holds for the launch, and returns when it saw it. armed (if
// given) is called after the first check.
func routingUntil(s *Service, id string, timeout time.Duration, armed func(), ok func(LaunchRouting) bool) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := s.RoutingChanged()
		if ok(s.Routing(id)) {
			now := time.Now()
			if armed != nil {
				armed()
			}
			return now, nil
		}
		if armed != nil {
			armed()
			armed = nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return time.Time{}, errors.New("launch " + id + " not routed as expected in time")
		}
	}
}

// envInt reads a benchmark setting from the environment: def when unset,
// and the benchmark fails on a value that is not a whole number >= min.
func envInt(b *testing.B, name string, def, min int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		b.Fatalf("%s=%q: want a whole number of at least %d", name, v, min)
	}
	return n
}
