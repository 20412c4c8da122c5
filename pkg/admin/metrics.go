package admin

import "github.com/prometheus/client_golang/prometheus"

// Metrics declares a service's collectors: each is created with its name
// prefixed by Prefix and registered on Reg at once, so a service's
// newMetrics is one line per metric.
type Metrics struct {
	Reg    prometheus.Registerer
	Prefix string
}

// Counter declares a counter.
func (m Metrics) Counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: m.Prefix + name, Help: help})
	m.Reg.MustRegister(c)
	return c
}

// CounterVec declares a counter with labels.
func (m Metrics) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: m.Prefix + name, Help: help}, labels)
	m.Reg.MustRegister(c)
	return c
}

// Gauge declares a gauge.
func (m Metrics) Gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: m.Prefix + name, Help: help})
	m.Reg.MustRegister(g)
	return g
}

// GaugeFunc declares a gauge read from f at each scrape (a queue's length,
// the size of a routing table: state the service holds anyway).
func (m Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: m.Prefix + name, Help: help}, f))
}

// Histogram declares a histogram.
func (m Metrics) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: m.Prefix + name, Help: help, Buckets: buckets})
	m.Reg.MustRegister(h)
	return h
}

// HistogramVec declares a histogram with labels.
func (m Metrics) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: m.Prefix + name, Help: help, Buckets: buckets}, labels)
	m.Reg.MustRegister(h)
	return h
}
