package stage

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The runtime's metrics carry the stage's prefix and unit, and every
// dead-letter reason exists at zero from the start.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := Config{MetricPrefix: "x_", Unit: "pairs", DeadLetterReasons: []string{"malformed"}}
	m := newMetrics(reg, &cfg)
	m.received.Inc()
	want := `
# HELP x_dead_lettered_total Deliveries moved to the dead-letter stream, by reason.
# TYPE x_dead_lettered_total counter
x_dead_lettered_total{reason="malformed"} 0
x_dead_lettered_total{reason="max_deliver"} 0
x_dead_lettered_total{reason="panic"} 0
# HELP x_pairs_received_total Deliveries of pairs, redeliveries included.
# TYPE x_pairs_received_total counter
x_pairs_received_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "x_dead_lettered_total", "x_pairs_received_total"); err != nil {
		t.Error(err)
	}
}
