package reporter_test

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// BenchmarkQueryStats computes the report of a launch of 200,000 pairs on
// 5 routes shaped like the demo's (a noisy route with two suppressed paths,
// a regression on every pair of another, array paths on a third), on the
// ClickHouse this machine has (18.16). It reports the time of one report
// computation and the pairs it covers per second. Seen on a shared 2-core
// machine: about 200 ms per report (the four queries take 60-125 ms each,
// in two rounds of two).
func BenchmarkQueryStats(b *testing.B) {
	const pairs = 200_000
	conn, err := analytics.Open(context.Background(), analytics.Options{Addr: testenv.StartClickHouse(b), Database: testDB, User: "default"})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	if err := analytics.Migrate(ctx, conn, testDB); err != nil {
		b.Fatal(err)
	}
	const launchID = "bench"
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	batch := make([]analytics.Row, 0, 50_000)
	for i := range pairs {
		r := analytics.Row{LaunchID: launchID, EnvelopeID: fmt.Sprintf("e%07d", i), TS: start.Add(time.Duration(i) * time.Millisecond),
			Method: "GET", PrimaryStatus: 200, ShadowStatus: 200, PrimaryLatencyUS: uint64(1000 + i%5000), ShadowLatencyUS: uint64(2000 + i%7000),
			HasSecondary: true, Match: true}
		switch i % 5 {
		case 0:
			r.Route = "/api/status"
			r.Match = false
			r.DiffPaths, r.DiffGeneralized, r.DiffKinds = []string{"$.request_id", "$.generated_at"}, []string{"$.request_id", "$.generated_at"}, []string{"value_changed", "value_changed"}
			r.DiffNoise = []bool{true, i%100 != 0}
			if i%100 == 0 {
				r.Fingerprint = "status-gen"
			}
		case 1:
			r.Route = "/api/orders/{id}"
			r.Match, r.Fingerprint = false, "orders"
			r.DiffPaths, r.DiffGeneralized, r.DiffKinds = []string{"$.total", "$.currency"}, []string{"$.total", "$.currency"}, []string{"type_changed", "missing_field"}
			r.DiffNoise = []bool{false, false}
		case 2:
			r.Route = "/api/items"
			if i%7 == 0 {
				r.Match, r.Fingerprint = false, "items"
				r.DiffPaths = []string{fmt.Sprintf("$.items[%d].price", i%20), fmt.Sprintf("$.items[%d].ts", i%20)}
				r.DiffGeneralized, r.DiffKinds = []string{"$.items[*].price", "$.items[*].ts"}, []string{"value_changed", "value_changed"}
				r.DiffNoise = []bool{false, true}
			}
		default:
			r.Route = fmt.Sprintf("/api/r%d", i%5)
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) {
			if err := analytics.Insert(ctx, conn, testDB, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	th := api.NoiseThresholds{MinCount: 5, MinRatio: 0.5}
	st, err := reporter.QueryStats(ctx, conn, testDB, launchID, th)
	if err != nil {
		b.Fatal(err)
	}
	if st.Totals.Compared != pairs || len(st.Noise.Suppressed) != 3 || st.Routes[0].Compared != pairs/5 {
		b.Fatalf("unexpected report: totals %+v, suppressed %+v", st.Totals, st.Noise.Suppressed)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := reporter.QueryStats(ctx, conn, testDB, launchID, th); err != nil {
			b.Fatal(err)
		}
	}
	perReport := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(perReport*1000, "ms/report")
	b.ReportMetric(pairs/perReport, "pairs/s")
}

// BenchmarkPollCached is the server's cost of polls served from memory
// (the numbers computed once, the cache fresh): the report and the
// verdict of a launch of 20,000 pairs, 20,000 polls each from hey (out of
// process, 50 clients, as fast as they go), with a token. Run with
// -benchtime 1x and -cpuprofile to see where a cached poll's time goes;
// it prints hey's latencies and the server's CPU per poll.
func BenchmarkPollCached(b *testing.B) {
	if _, err := exec.LookPath("hey"); err != nil {
		b.Skip("hey is not installed (make deps installs it)")
	}
	e := startEnv(b, envOptions{cacheTTL: time.Hour})
	l := e.create("polled", 10)
	rows := shapedRows(l.ID, time.Now().Add(-10*time.Minute), 20_000, 10, 1)
	if err := analytics.Insert(context.Background(), e.ch, testDB, rows); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		for _, ep := range []string{"report", "verdict"} {
			url := e.base + "/v1/launches/" + l.ID + "/" + ep
			request(b, "GET", url, nil, bearer("read")...) // computed once
			before := processCPU(b)
			out, err := exec.Command("hey", "-n", "20000", "-c", "50", "-H", "Authorization: Bearer "+testTokens["read"], url).CombinedOutput()
			if err != nil {
				b.Fatalf("hey: %v\n%s", err, out)
			}
			fmt.Printf("%s, cached, 20,000 polls: %s; server CPU %.1f µs per poll\n", ep, heySummary(string(out)),
				float64((processCPU(b)-before).Microseconds())/20000)
		}
	}
}

// processCPU is the CPU time this process used so far (user and system).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
