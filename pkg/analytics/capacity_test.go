package analytics

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// realisticRows are n pairs of launch as the comparator writes them over
// a day from start: UUIDv7 envelope ids, a few taps, 40 routes with ids
// in their paths, log-normal-ish latencies, 90% matching pairs, the rest
// with one to three differences (fingerprinted, summarised), two thirds
// with a secondary.
func realisticRows(launch string, start time.Time, n int, seed uint64) []Row {
	rnd := rand.New(rand.NewPCG(seed, 2))
	rows := make([]Row, n)
	fields := []string{"name", "email", "updated_at", "items[%d].price", "items[%d].sku", "total", "currency", "request_id"}
	for i := range rows {
		ts := start.Add(time.Duration(i) * 24 * time.Hour / time.Duration(n))
		route := fmt.Sprintf("/api/v1/resource%02d/{id}", rnd.IntN(40))
		lat := uint64(800 + rnd.ExpFloat64()*8000)
		r := Row{LaunchID: launch, EnvelopeID: uuid.Must(uuid.NewV7()).String(), TS: ts,
			TapID:  fmt.Sprintf("mirror-6f9c8d7b5-%c%c%c%c%c", 'a'+rnd.IntN(3), 'k', 'q', 'x', 'z'),
			Method: []string{"GET", "GET", "GET", "POST", "PUT"}[rnd.IntN(5)], Route: route,
			Path:          fmt.Sprintf("/api/v1/resource%02d/%d", rnd.IntN(40), rnd.IntN(1_000_000)),
			PrimaryStatus: 200, ShadowStatus: 200, PrimaryLatencyUS: lat, ShadowLatencyUS: uint64(float64(lat) * (0.8 + rnd.Float64()*0.5)),
			Match: true, StatusMatch: true, ContentTypeMatch: true, BodyMatch: true, HeadersMatch: true, BodyFormat: "json",
			HasSecondary: rnd.IntN(3) > 0, RulesRevision: 3}
		if r.HasSecondary {
			r.SecondaryStatus, r.SecondaryLatencyUS = 200, lat+uint64(rnd.IntN(500))
		}
		if rnd.IntN(10) == 0 {
			r.Match, r.BodyMatch = false, false
			for range 1 + rnd.IntN(3) {
				f := fields[rnd.IntN(len(fields))]
				path := f
				if strings.Contains(f, "%d") {
					path = fmt.Sprintf(f, rnd.IntN(5))
				}
				r.DiffGeneralized = append(r.DiffGeneralized, "$."+strings.ReplaceAll(f, "%d", "*"))
				r.DiffPaths = append(r.DiffPaths, "$."+path)
				r.DiffKinds = append(r.DiffKinds, []string{"value_changed", "missing", "type_changed"}[rnd.IntN(3)])
				r.DiffNoise = append(r.DiffNoise, f == "request_id" || f == "updated_at")
			}
			r.Fingerprint = fmt.Sprintf("%016x", rnd.Uint64()%64)
			r.DiffSummary = fmt.Sprintf("%d differences: %s %s", len(r.DiffPaths), r.DiffKinds[0], r.DiffPaths[0])
		}
		rows[i] = r
	}
	return rows
}

// BenchmarkDiskPerRow measures what a comparison row costs on disk once
// merged (docs/clickhouse.md, "Capacity"): 1M realistic rows of one
// launch over a day, then OPTIMIZE ... FINAL, then the aggregates sealed
// from them. It reports bytes per raw row and the aggregates' bytes per
// raw row.
//
//	go test -run '^$' -bench DiskPerRow -benchtime 1x ./analytics/
func BenchmarkDiskPerRow(b *testing.B) {
	const n = 1_000_000
	for range b.N {
		ctx := testenv.Context(b)
		conn, err := Open(ctx, Options{Addr: testenv.StartClickHouse(b), Database: "cap", User: "default"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		if err := Migrate(ctx, conn, "cap"); err != nil {
			b.Fatal(err)
		}
		start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
		rows := realisticRows("launch-checkout-v2", start, n, 1)
		for i := 0; i < n; i += 100_000 {
			if err := Insert(ctx, conn, "cap", rows[i:i+100_000]); err != nil {
				b.Fatal(err)
			}
		}
		if err := conn.Exec(ctx, "OPTIMIZE TABLE cap.comparisons FINAL"); err != nil {
			b.Fatal(err)
		}
		if _, err := Compact(ctx, conn, "cap", "launch-checkout-v2", start.Add(25*time.Hour), 0); err != nil {
			b.Fatal(err)
		}
		for _, t := range AggregateTables {
			if err := conn.Exec(ctx, "OPTIMIZE TABLE cap."+t+" FINAL"); err != nil {
				b.Fatal(err)
			}
		}
		var raw, agg, rawRows uint64
		if err := conn.QueryRow(ctx, "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE database = 'cap' AND table = 'comparisons' AND active").Scan(&raw, &rawRows); err != nil {
			b.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'cap' AND table IN ('seals', 'pair_counts', 'diff_counts', 'latency_hist') AND active").Scan(&agg); err != nil {
			b.Fatal(err)
		}
		if rawRows != n {
			b.Fatalf("%d rows stored, want %d", rawRows, n)
		}
		b.ReportMetric(float64(raw)/float64(n), "bytes/row")
		b.ReportMetric(float64(agg)/float64(n), "aggregate-bytes/row")
	}
}
