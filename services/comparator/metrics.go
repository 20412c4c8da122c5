package comparator

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the comparator's counters since New.
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

// counter is a Prometheus counter that tests can also read.
type counter struct {
	n atomic.Uint64
	c prometheus.Counter
}

func (c *counter) add(n int) {
	c.n.Add(uint64(n))
	c.c.Add(float64(n))
}

type metrics struct {
	received, inserted, batches, insertFailures, deadLettered, mismatches, duplicates counter
	withSecondary, noisyDiffs, examples, exampleFailures                              counter

	pending        prometheus.Gauge
	batchLatency   prometheus.Histogram
	insertDuration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{}
	for _, c := range []struct {
		c          *counter
		name, help string
	}{
		{&m.received, "pairs_received_total", "Pair messages taken from the stream, malformed ones and redeliveries included."},
		{&m.inserted, "rows_inserted_total", "Comparison rows written to ClickHouse."},
		{&m.batches, "batches_total", "Batches inserted into ClickHouse."},
		{&m.insertFailures, "insert_failures_total", "Failed ClickHouse insert attempts; the batch is kept and retried."},
		{&m.deadLettered, "dead_lettered_total", "Malformed pair messages moved to the dead-letter stream."},
		{&m.mismatches, "mismatches_total", "Inserted rows whose shadow response did not match the primary's (shadow failures included)."},
		{&m.duplicates, "duplicates_total", "Messages whose envelope id was already in the batch being built."},
		{&m.withSecondary, "pairs_with_secondary_total", "Inserted rows whose secondary answered, so noise cancellation applied."},
		{&m.noisyDiffs, "noisy_diffs_total", "Diffs of inserted rows marked as noise: the secondary differed from the primary there too."},
		{&m.examples, "examples_written_total", "Redacted example pairs written to the examples table."},
		{&m.exampleFailures, "example_failures_total", "Example inserts that failed (best-effort: the batch's rows are stored and acked anyway)."},
	} {
		c.c.c = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "darklaunch", Subsystem: "comparator", Name: c.name, Help: c.help})
		reg.MustRegister(c.c.c)
	}
	m.pending = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "darklaunch", Subsystem: "comparator", Name: "batch_pending_pairs",
		Help: "Pairs in the batch being built or inserted, not yet acknowledged."})
	m.batchLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "darklaunch", Subsystem: "comparator", Name: "batch_latency_seconds",
		Help:    "From the first pair of a batch being fetched to the batch being inserted and acknowledged.",
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300}})
	m.insertDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "darklaunch", Subsystem: "comparator", Name: "insert_duration_seconds",
		Help:    "Duration of successful ClickHouse inserts.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)})
	reg.MustRegister(m.pending, m.batchLatency, m.insertDuration)
	return m
}

func (m *metrics) snapshot() Stats {
	return Stats{
		Received:        m.received.n.Load(),
		Inserted:        m.inserted.n.Load(),
		Batches:         m.batches.n.Load(),
		InsertFailures:  m.insertFailures.n.Load(),
		DeadLettered:    m.deadLettered.n.Load(),
		Mismatches:      m.mismatches.n.Load(),
		Duplicates:      m.duplicates.n.Load(),
		WithSecondary:   m.withSecondary.n.Load(),
		NoisyDiffs:      m.noisyDiffs.n.Load(),
		Examples:        m.examples.n.Load(),
		ExampleFailures: m.exampleFailures.n.Load(),
	}
}
