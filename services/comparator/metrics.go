package comparator

import (
	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the comparator's counters since New, read from the collectors
// /metrics serves.
type Stats struct {
	// Received counts pair messages taken from the stream, malformed
	// ones and redeliveries included.
	Received uint64
	// Inserted counts rows written to ClickHouse, Batches the inserts.
	Inserted uint64
	Batches  uint64
	// InsertFailures counts failed insert attempts (each is retried).
	InsertFailures uint64
	// DeadLettered counts malformed messages moved to the dead-letter stream.
	DeadLettered uint64
	// Mismatches counts inserted rows with match=0.
	Mismatches uint64
	// Duplicates counts messages whose envelope id was already in the batch
	// (acked with it, no second row).
	Duplicates uint64
	// WithSecondary counts inserted rows whose secondary answered (noise
	// cancellation applied); NoisyDiffs counts the diffs of inserted rows
	// marked as noise (the secondary differed there too).
	WithSecondary uint64
	NoisyDiffs    uint64
	// Examples counts example rows written; ExampleFailures counts
	// example inserts that failed (examples are best-effort: the rows of
	// the batch are stored and acked regardless).
	Examples        uint64
	ExampleFailures uint64
}

// metrics are the comparator's own collectors; deliveries, acks and dead
// letters are the stage runtime's.
type metrics struct {
	inserted, batches, insertFailures, mismatches, duplicates prometheus.Counter
	withSecondary, noisyDiffs, examples, exampleFailures      prometheus.Counter

	pending        prometheus.Gauge
	batchLatency   prometheus.Histogram
	insertDuration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	d := admin.Metrics{Reg: reg, Prefix: "darklaunch_comparator_"}
	return &metrics{
		inserted:        d.Counter("rows_inserted_total", "Comparison rows written to ClickHouse."),
		batches:         d.Counter("batches_total", "Batches inserted into ClickHouse."),
		insertFailures:  d.Counter("insert_failures_total", "Failed ClickHouse insert attempts; the batch is kept and retried."),
		mismatches:      d.Counter("mismatches_total", "Inserted rows whose shadow response did not match the primary's (shadow failures included)."),
		duplicates:      d.Counter("duplicates_total", "Messages whose envelope id was already in the batch being built."),
		withSecondary:   d.Counter("pairs_with_secondary_total", "Inserted rows whose secondary answered, so noise cancellation applied."),
		noisyDiffs:      d.Counter("noisy_diffs_total", "Diffs of inserted rows marked as noise: the secondary differed from the primary there too."),
		examples:        d.Counter("examples_written_total", "Redacted example pairs written to the examples table."),
		exampleFailures: d.Counter("example_failures_total", "Example inserts that failed (best-effort: the batch's rows are stored and acked anyway)."),
		pending:         d.Gauge("batch_pending_pairs", "Pairs taken from deliveries and not yet acknowledged: being compared, in the batch being built, or being inserted."),
		batchLatency: d.Histogram("batch_latency_seconds",
			"From the first pair of a batch being fetched to the batch being inserted and acknowledged.",
			[]float64{.01, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300}),
		insertDuration: d.Histogram("insert_duration_seconds", "Duration of successful ClickHouse inserts.",
			prometheus.ExponentialBuckets(0.001, 2.5, 12)),
	}
}

func (m *metrics) snapshot(st stage.Stats) Stats {
	return Stats{
		Received:        uint64(st.Received),
		Inserted:        admin.Uint(m.inserted),
		Batches:         admin.Uint(m.batches),
		InsertFailures:  admin.Uint(m.insertFailures),
		DeadLettered:    uint64(st.DeadLetteredTotal()),
		Mismatches:      admin.Uint(m.mismatches),
		Duplicates:      admin.Uint(m.duplicates),
		WithSecondary:   admin.Uint(m.withSecondary),
		NoisyDiffs:      admin.Uint(m.noisyDiffs),
		Examples:        admin.Uint(m.examples),
		ExampleFailures: admin.Uint(m.exampleFailures),
	}
}
