package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value reads the current value of one counter or gauge (a vector's child
// from WithLabelValues included): the way a service's Stats snapshot reads
// the same collectors /metrics serves, so nothing is counted twice. Any
// other metric reads as 0.
func Value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return 0
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	case d.Untyped != nil:
		return d.Untyped.GetValue()
	}
	return 0
}

// Int is Value as an int64, for counters that only count whole events.
func Int(m prometheus.Metric) int64 { return int64(Value(m)) }

// Uint is Value as a uint64.
func Uint(m prometheus.Metric) uint64 { return uint64(Value(m)) }

// Sum adds up the values of every series a collector holds (all the
// children of a vector).
func Sum(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var sum float64
	for m := range ch {
		sum += Value(m)
	}
	return sum
}

// Label is the value of one label of a metric ("" when it has none).
func Label(m prometheus.Metric, name string) string {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return ""
	}
	for _, l := range d.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// ByLabel reads every series of a vector into a map from the value of
// one of its labels to the series' value.
func ByLabel(c prometheus.Collector, name string) map[string]float64 {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	out := map[string]float64{}
	for m := range ch {
		out[Label(m, name)] += Value(m)
	}
	return out
}
