package admin

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsDeclares(t *testing.T) {
	reg := prometheus.NewRegistry()
	d := Metrics{Reg: reg, Prefix: "x_"}
	d.Counter("c_total", "c").Inc()
	d.CounterVec("v_total", "v", "k").WithLabelValues("a").Inc()
	d.Gauge("g", "g").Set(2)
	d.GaugeFunc("f", "f", func() float64 { return 3 })
	d.Histogram("h", "h", []float64{1}).Observe(1)
	d.HistogramVec("hv", "hv", []float64{1}, "k").WithLabelValues("a").Observe(1)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	for _, n := range []string{"x_c_total", "x_v_total", "x_g", "x_f", "x_h", "x_hv"} {
		if !names[n] {
			t.Errorf("%s not registered (have %v)", n, names)
		}
	}
}
