package demo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report mirrors the reporter's GET /v1/launches/{id}/report body (the
// fields the demo prints); see docs/api.md.
type Report struct {
	Launch struct {
		ID            string  `json:"id"`
		Name          string  `json:"name"`
		Status        string  `json:"status"`
		SamplePercent float64 `json:"sample_percent"`
	} `json:"launch"`
	Totals struct {
		Compared     uint64  `json:"compared"`
		Mismatches   uint64  `json:"mismatches"`
		ShadowErrors uint64  `json:"shadow_errors"`
		MismatchRate float64 `json:"mismatch_rate"`
	} `json:"totals"`
	Latency Latency `json:"latency_ms"`
	Routes  []struct {
		Route        string  `json:"route"`
		Compared     uint64  `json:"compared"`
		Mismatches   uint64  `json:"mismatches"`
		ShadowErrors uint64  `json:"shadow_errors"`
		Latency      Latency `json:"latency_ms"`
	} `json:"routes"`
	Diffs []struct {
		Path  string `json:"path"`
		Kind  string `json:"kind"`
		Count uint64 `json:"count"`
	} `json:"diffs"`
}

// Latency is a pair of percentile sets in milliseconds.
type Latency struct {
	Primary Percentiles `json:"primary"`
	Shadow  Percentiles `json:"shadow"`
}

// Percentiles in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// PrintReport writes the report as readable tables.
func PrintReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "Launch %s (%s): %s, sampling %.4g%%\n\n", r.Launch.Name, r.Launch.ID, r.Launch.Status, r.Launch.SamplePercent)
	fmt.Fprintf(w, "Compared %d pairs: %d mismatches (%.1f%%), %d shadow errors\n", r.Totals.Compared, r.Totals.Mismatches,
		100*r.Totals.MismatchRate, r.Totals.ShadowErrors)
	fmt.Fprintf(w, "Latency ms   primary p50 %.2f  p95 %.2f  p99 %.2f | shadow p50 %.2f  p95 %.2f  p99 %.2f\n\n",
		r.Latency.Primary.P50, r.Latency.Primary.P95, r.Latency.Primary.P99, r.Latency.Shadow.P50, r.Latency.Shadow.P95, r.Latency.Shadow.P99)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ROUTE\tCOMPARED\tMISMATCH\tMISMATCH %\tSHADOW ERR\tP95 PRIMARY ms\tP95 SHADOW ms\tP95 RATIO\t")
	for _, rt := range r.Routes {
		ratio := "-"
		if rt.Latency.Primary.P95 > 0 {
			ratio = fmt.Sprintf("%.1fx", rt.Latency.Shadow.P95/rt.Latency.Primary.P95)
		}
		pct := 0.0
		if rt.Compared > 0 {
			pct = 100 * float64(rt.Mismatches) / float64(rt.Compared)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%d\t%.2f\t%.2f\t%s\t\n", rt.Route, rt.Compared, rt.Mismatches, pct, rt.ShadowErrors,
			rt.Latency.Primary.P95, rt.Latency.Shadow.P95, ratio)
	}
	tw.Flush()
	if len(r.Diffs) > 0 {
		fmt.Fprintln(w, "\nDifferences (shadow against primary)")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PATH\tKIND\tCOUNT")
		for _, d := range r.Diffs {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", d.Path, d.Kind, d.Count)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, strings.Repeat("-", 72))
}
