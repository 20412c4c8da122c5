package admin

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValueAndSum(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "c"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "g"})
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "v_total", Help: "v"}, []string{"k"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "h"})
	c.Add(3)
	g.Set(-2)
	v.WithLabelValues("a").Inc()
	v.WithLabelValues("b").Add(4)
	h.Observe(1)
	if Int(c) != 3 || Value(g) != -2 || Uint(v.WithLabelValues("b")) != 4 || Value(h) != 0 {
		t.Errorf("values: c %v g %v v.b %v h %v", Value(c), Value(g), Value(v.WithLabelValues("b")), Value(h))
	}
	if by := ByLabel(v, "k"); by["a"] != 1 || by["b"] != 4 || Label(v.WithLabelValues("a"), "k") != "a" {
		t.Errorf("by label %v", by)
	}
	if Sum(v) != 5 || Sum(c) != 3 {
		t.Errorf("sums: v %v c %v", Sum(v), Sum(c))
	}
}
