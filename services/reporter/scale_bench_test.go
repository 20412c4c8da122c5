package reporter_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// seedSQL writes @count pairs of one launch from pair number @offset on,
// 2,000 per second from @base (Unix seconds), shaped like
// BenchmarkQueryStats's: five routes, a noisy route with suppressed paths,
// a regression on every pair of another, array paths on a third, shadow
// timeouts on the last two. Envelope ids grow with time, as UUIDv7 do.
const seedSQL = `INSERT INTO %[1]s.comparisons (launch_id, envelope_id, ts, received_at_us, tap_id, method, route, path,
	primary_status, shadow_status, primary_latency_us, shadow_latency_us, match, status_match, content_type_match, body_match,
	shadow_error, shadow_error_kind, diff_paths, diff_kinds, request_body_truncated, primary_body_truncated, shadow_body_truncated,
	compare_note, inserted_at, diff_generalized, diff_noise, fingerprint, has_secondary, secondary_status, secondary_latency_us,
	secondary_error, headers_match, body_format, diff_summary, rules_revision)
SELECT @launch, toString(1000000000000 + n), toDateTime(@base + intDiv(n, 2000)), toInt64(@base) * 1000000 + n * 500, 'tap-1', 'GET',
	arrayElement(['/api/status', '/api/orders/{id}', '/api/items', '/api/r3', '/api/r4'], k + 1) AS r, r,
	200, if(err, 0, 200), 1000 + (n * 7919) %% 5000, if(err, 30000000, 2000 + (n * 104729) %% 7000),
	toUInt8(NOT (k = 0 OR k = 1 OR (k = 2 AND n %% 7 = 0) OR err)), 1, 1, 1,
	if(err, 'timeout', ''), if(err, 'timeout', ''),
	multiIf(k = 0, ['$.request_id', '$.generated_at'], k = 1, ['$.total', '$.currency'],
		k = 2 AND n %% 7 = 0, [concat('$.items[', toString(n %% 20), '].price'), concat('$.items[', toString(n %% 20), '].ts')], emptyArrayString()),
	multiIf(k = 0, ['value_changed', 'value_changed'], k = 1, ['type_changed', 'missing_field'], k = 2 AND n %% 7 = 0, ['value_changed', 'value_changed'], emptyArrayString()),
	0, 0, 0, '', now(),
	multiIf(k = 0, ['$.request_id', '$.generated_at'], k = 1, ['$.total', '$.currency'], k = 2 AND n %% 7 = 0, ['$.items[*].price', '$.items[*].ts'], emptyArrayString()),
	multiIf(k = 0, [toUInt8(1), toUInt8(n %% 100 != 0)], k = 1, [toUInt8(0), toUInt8(0)], k = 2 AND n %% 7 = 0, [toUInt8(0), toUInt8(1)], emptyArrayUInt8()),
	multiIf(k = 0 AND n %% 100 = 0, 'status-gen', k = 1, 'orders', k = 2 AND n %% 7 = 0, 'items', ''),
	1, 200, 1500, '', 1, 'json', '', 1
FROM (SELECT number + @offset AS n, n %% 5 AS k, k >= 3 AND n %% 97 = 0 AS err FROM system.numbers LIMIT @count)`

// BenchmarkReportScale is `make bench`'s report and verdict figures: it
// seeds one launch with 1M, then 10M, then 30M pairs (DL_BENCH_ROWS, comma
// separated) into a private ClickHouse and, at each size, seals the
// pairs as the reporter would 5 s before the last pair (the last 15 s
// stay an unsealed tail, the most they are with the default settings), then times uncached report and verdict computations
// on the aggregates (QueryStats, QueryWindow: what the reporter runs) and
// the raw-row queries for the same figures (QueryStatsRaw, QueryWindowRaw)
// in the same run. At the largest size it polls a running reporter with
// hey (out of process): 1,000 req/s from 50 clients for the report, then
// for the verdict. Run with -benchtime 1x.
func BenchmarkReportScale(b *testing.B) {
	sizes := []int{1_000_000, 10_000_000, 30_000_000}
	if s := os.Getenv("DL_BENCH_ROWS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("DL_BENCH_ROWS: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	e := startBenchEnv(b)
	ctx := context.Background()
	conn := e.ch

	// The launch exists in the reporter (for the polling part).
	var l struct{ ID string }
	res, body := request(b, "POST", e.base+"/v1/launches", map[string]any{"name": "bench", "shadow_url": "http://shadow", "sample_percent": 10}, bearer("admin")...)
	if res.StatusCode != http.StatusCreated || jsonUnmarshal(body, &l) != nil {
		b.Fatalf("create launch: %d %s", res.StatusCode, body)
	}
	th := api.NoiseThresholds{MinCount: 5, MinRatio: 0.5}
	total := sizes[len(sizes)-1]
	base := time.Now().Add(-time.Duration(total/2000)*time.Second - 10*time.Second).Truncate(time.Minute).Unix()
	fmt.Printf("\n%-8s %-30s %10s %10s %8s\n", "pairs", "what", "p50 ms", "p99 ms", "runs")
	line := func(n int, what string, d []time.Duration) {
		slices.Sort(d)
		p := func(q float64) float64 {
			return float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
		}
		fmt.Printf("%-8s %-30s %10.1f %10.1f %8d\n", human(n), what, p(0.5), p(0.99), len(d))
	}
	seeded := 0
	summary := map[int][2]time.Duration{}
	for _, n := range sizes {
		start := time.Now()
		for seeded < n {
			chunk := min(n-seeded, 5_000_000)
			if err := conn.Exec(ctx, fmt.Sprintf(seedSQL, testDB), clickhouse.Named("launch", l.ID), clickhouse.Named("base", base),
				clickhouse.Named("offset", seeded), clickhouse.Named("count", chunk)); err != nil {
				b.Fatal(err)
			}
			seeded += chunk
		}
		line(n, "seed (INSERT ... SELECT)", []time.Duration{time.Since(start)})
		// Compaction as the reporter runs it (REPORTER_SEAL_AFTER 10s, every
		// REPORTER_COMPACT_INTERVAL 5s), its last run 5 s before the last
		// pair: the raw tail is the last 15 s (30,000 pairs), the most it
		// is with the default settings.
		end := time.Unix(base, 0).Add(time.Duration(n/2000) * time.Second).Add(-5 * time.Second)
		start = time.Now()
		cres, err := analytics.Compact(ctx, conn, testDB, l.ID, end, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		line(n, fmt.Sprintf("compaction catch-up (%d b)", cres.Sealed+cres.Resealed), []time.Duration{time.Since(start)})
		// The last minute as compaction every 5 s leaves it: resealed 12
		// times, superseded versions not merged away yet.
		for i := 12; i > 0; i-- {
			if _, err := analytics.CompactRecent(ctx, conn, testDB, l.ID, end.Add(-time.Duration(i)*5*time.Second), 10*time.Second, end.Add(-5*time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
		var idle []time.Duration
		for range 3 {
			start = time.Now()
			if _, err := analytics.Compact(ctx, conn, testDB, l.ID, end, 10*time.Second); err != nil {
				b.Fatal(err)
			}
			idle = append(idle, time.Since(start))
		}
		line(n, "compaction full tick, nothing new", idle)
		var recent []time.Duration
		for range 3 {
			start = time.Now()
			if _, err := analytics.CompactRecent(ctx, conn, testDB, l.ID, end, 10*time.Second, end.Add(-10*time.Second-3*time.Minute)); err != nil {
				b.Fatal(err)
			}
			recent = append(recent, time.Since(start))
		}
		line(n, "compaction tick, last minutes", recent)
		var tail uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+testDB+".comparisons WHERE launch_id = ? AND received_at_us >= (SELECT max(until_us) FROM "+
			testDB+".seals WHERE launch_id = ?)", l.ID, l.ID).Scan(&tail); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("%-8s %-30s %10d rows past the watermark (the tail read raw), %d aggregate rows\n", human(n), "", tail, aggregateRows(b, conn))

		// The verdict window starts 17.3 s into the data: the partial
		// bucket at its edge is read raw, the rest of history sealed.
		fromUS := time.Unix(base, 0).Add(17300 * time.Millisecond).UnixMicro()
		runs := 15
		rawRuns := 3
		if n > 10_000_000 {
			rawRuns = 1
		}
		// measure times n reports (stats) and verdict windows (window).
		measure := func(n int, stats func() (*api.Stats, error), window func() error) (rep, ver []time.Duration, last *api.Stats) {
			for range n {
				rep = append(rep, timed(b, func() (err error) { last, err = stats(); return err }))
				ver = append(ver, timed(b, window))
			}
			return rep, ver, last
		}
		rep, ver, aggSt := measure(runs, func() (*api.Stats, error) { return reporter.QueryStats(ctx, conn, testDB, l.ID, th) },
			func() error { _, err := reporter.QueryWindow(ctx, conn, testDB, l.ID, fromUS, th); return err })
		rawRep, rawVer, rawSt := measure(rawRuns, func() (*api.Stats, error) { return reporter.QueryStatsRaw(ctx, conn, testDB, l.ID, th) },
			func() error { _, err := reporter.QueryWindowRaw(ctx, conn, testDB, l.ID, fromUS, th); return err })
		// The parts of a report and of a verdict, one at a time.
		v, err := analytics.NewView(ctx, conn, testDB, l.ID, 0)
		if err != nil {
			b.Fatal(err)
		}
		win := v
		win.FromUS = fromUS
		for _, part := range []struct {
			name string
			run  func() error
		}{
			{"  part: pair groups", func() error { _, err := analytics.PairGroups(ctx, conn, testDB, v); return err }},
			{"  part: diff groups", func() error { _, err := analytics.DiffGroups(ctx, conn, testDB, v); return err }},
			{"  part: latency histograms", func() error { _, err := analytics.Histograms(ctx, conn, testDB, v); return err }},
			{"  part: window view", func() error { _, err := analytics.NewView(ctx, conn, testDB, l.ID, fromUS); return err }},
			{"  part: window pair groups", func() error { _, err := analytics.PairGroups(ctx, conn, testDB, win); return err }},
			{"  part: window histograms", func() error { _, err := analytics.Histograms(ctx, conn, testDB, win); return err }},
		} {
			var d []time.Duration
			for range 5 {
				d = append(d, timed(b, part.run))
			}
			line(n, part.name, d)
		}
		// What each computation reads in ClickHouse: a cost the machine's
		// load does not move.
		for _, c := range []struct {
			what string
			run  func(context.Context) error
		}{
			{"report, aggregates", func(ctx context.Context) error {
				_, err := reporter.QueryStats(ctx, conn, testDB, l.ID, th)
				return err
			}},
			{"report, raw rows FINAL", func(ctx context.Context) error {
				_, err := reporter.QueryStatsRaw(ctx, conn, testDB, l.ID, th)
				return err
			}},
			{"verdict, aggregates", func(ctx context.Context) error {
				_, err := reporter.QueryWindow(ctx, conn, testDB, l.ID, fromUS, th)
				return err
			}},
			{"verdict, raw rows FINAL", func(ctx context.Context) error {
				_, err := reporter.QueryWindowRaw(ctx, conn, testDB, l.ID, fromUS, th)
				return err
			}},
		} {
			rows, bytes := readCost(b, c.run)
			fmt.Printf("%-8s %-30s %10.3g rows read, %.3g MB\n", human(n), c.what, float64(rows), float64(bytes)/1e6)
		}
		line(n, "report, aggregates (uncached)", rep)
		line(n, "report, raw rows FINAL", rawRep)
		line(n, "verdict, aggregates (uncached)", ver)
		line(n, "verdict, raw rows FINAL", rawVer)
		if aggSt.Totals != rawSt.Totals || uint64(n) != aggSt.Totals.Compared {
			b.Fatalf("the aggregates' totals %+v differ from the raw rows' %+v", aggSt.Totals, rawSt.Totals)
		}
		slices.Sort(rep)
		slices.Sort(ver)
		summary[n] = [2]time.Duration{rep[len(rep)/2], ver[len(ver)/2]}
	}
	if len(sizes) > 1 {
		for _, n := range sizes[1:] {
			ref := sizes[1]
			if n == ref {
				ref = sizes[0]
			}
			fmt.Printf("cost ratio %s / %s: report p50 %.2fx, verdict p50 %.2fx\n", human(n), human(ref),
				float64(summary[n][0])/float64(summary[ref][0]), float64(summary[n][1])/float64(summary[ref][1]))
		}
	}
	if _, err := exec.LookPath("hey"); err != nil {
		fmt.Println("polling: hey is not installed (make deps installs it); skipped")
		return
	}
	for _, ep := range []string{"report", "verdict"} {
		url := e.base + "/v1/launches/" + l.ID + "/" + ep
		request(b, "GET", url, nil, bearer("read")...) // warm: the first computation
		// 50 clients at 20 req/s each: 1,000 req/s for 10 s.
		out, err := exec.Command("hey", "-z", "10s", "-c", "50", "-q", "20", "-H", "Authorization: Bearer "+testTokens["read"], url).CombinedOutput()
		if err != nil {
			b.Fatalf("hey: %v\n%s", err, out)
		}
		fmt.Printf("polling %s at 1,000 req/s, 50 clients (hey -z 10s -c 50 -q 20), %s pairs: %s\n", ep, human(total), heySummary(string(out)))
	}
}

// heySummary picks the rate, p50, p99 and status codes from hey's output.
func heySummary(out string) string {
	find := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			return "?"
		}
		return m[1]
	}
	ms := func(s string) string {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return s
		}
		return fmt.Sprintf("%.2f ms", f*1000)
	}
	codes := regexp.MustCompile(`\[(\d+)\]\s+(\d+) responses`).FindAllStringSubmatch(out, -1)
	var cs []string
	for _, c := range codes {
		cs = append(cs, c[1]+": "+c[2])
	}
	return fmt.Sprintf("%s req/s, p50 %s, p99 %s, max %s; codes %s", find(`Requests/sec:\s+([\d.]+)`),
		ms(find(`50% in ([\d.]+) secs`)), ms(find(`99% in ([\d.]+) secs`)), ms(find(`Slowest:\s+([\d.]+) secs`)), strings.Join(cs, ", "))
}

func human(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%gM", float64(n)/1e6)
	case n >= 1000:
		return fmt.Sprintf("%gk", float64(n)/1e3)
	}
	return strconv.Itoa(n)
}

func aggregateRows(b *testing.B, conn driver.Conn) uint64 {
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT (SELECT count() FROM "+testDB+".pair_counts) + (SELECT count() FROM "+testDB+
		".diff_counts) + (SELECT count() FROM "+testDB+".latency_hist)").Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// benchEnv is a reporter on private servers, for benchmarks.
type benchEnv struct {
	base string
	ch   driver.Conn
}

func startBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	js := testenv.StartJetStream(b)
	chAddr := testenv.StartClickHouse(b)
	cfg := reporter.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", CacheTTL: 2 * time.Second, QueryTimeout: 30 * time.Second, ID: "bench"}
	cfg.NATSURL = js.URL()
	cfg.ClickHouseAddr, cfg.ClickHouseDatabase, cfg.ClickHouseUser = chAddr, testDB, "default"
	cfg.RedisURL = testenv.StartRedis(b)
	cfg.TokensFile = writeTokens(b)
	svc, err := reporter.New(cfg, testenv.Logger(b, slog.LevelWarn))
	if err != nil {
		b.Fatal(err)
	}
	testenv.Run(b, svc.Run)
	// The raw-row baseline's queries may wait minutes for a packet at 30M
	// rows on a loaded machine.
	conn, err := analytics.Open(context.Background(), analytics.Options{Addr: chAddr, Database: testDB, User: "default", ReadTimeout: 15 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	e := &benchEnv{base: "http://" + svc.Addr(), ch: conn}
	testenv.CheckFor(b, 20*time.Second, 50*time.Millisecond, func() error {
		res, body := request(b, "GET", e.base+"/healthz", nil)
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz %d: %s", res.StatusCode, body)
		}
		return nil
	})
	return e
}

// readCost runs f once with a context whose ClickHouse queries report
// their progress, and returns the rows and bytes they read.
func readCost(b *testing.B, f func(context.Context) error) (rows, bytes uint64) {
	b.Helper()
	var r, by atomic.Uint64
	ctx := clickhouse.Context(context.Background(), clickhouse.WithProgress(func(p *clickhouse.Progress) {
		r.Add(p.Rows)
		by.Add(p.Bytes)
	}))
	if err := f(ctx); err != nil {
		b.Fatal(err)
	}
	return r.Load(), by.Load()
}

// timed runs f once and says how long it took; the benchmark fails on its
// error.
func timed(b *testing.B, f func() error) time.Duration {
	b.Helper()
	start := time.Now()
	if err := f(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
