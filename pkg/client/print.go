package client

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// maxClassesShown is how many diff classes PrintReport lists.
const maxClassesShown = 5

// PrintReport writes the report as readable tables.
func PrintReport(w io.Writer, r *api.Report) {
	l := r.Launch
	if l == nil {
		l = &launch.Launch{}
	}
	fmt.Fprintf(w, "Launch %s (%s): %s, sampling %.4g%%\n\n", l.Name, l.ID, l.Status, l.SamplePercent)
	fmt.Fprintf(w, "Compared %d pairs: %d mismatches (%.1f%%) after noise, %d raw (%.1f%%); %d shadow errors; %d pairs with a secondary\n",
		r.Totals.Compared, r.Totals.Mismatches, 100*r.Totals.MismatchRate, r.Totals.RawMismatches, 100*r.Totals.RawMismatchRate,
		r.Totals.ShadowErrors, r.Totals.WithSecondary)
	fmt.Fprintf(w, "Latency ms   primary p50 %.2f  p95 %.2f  p99 %.2f | shadow p50 %.2f  p95 %.2f  p99 %.2f\n\n",
		r.LatencyMS.Primary.P50, r.LatencyMS.Primary.P95, r.LatencyMS.Primary.P99, r.LatencyMS.Shadow.P50, r.LatencyMS.Shadow.P95, r.LatencyMS.Shadow.P99)
	printAccounting(w, r.Accounting)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ROUTE\tCOMPARED\tMISMATCH\tMISMATCH %\tRAW\tSHADOW ERR\tP95 PRIMARY ms\tP95 SHADOW ms\tP95 RATIO\t")
	for _, rt := range r.Routes {
		ratio := "-"
		if rt.LatencyMS.Primary.P95 > 0 {
			ratio = fmt.Sprintf("%.1fx", rt.LatencyMS.Shadow.P95/rt.LatencyMS.Primary.P95)
		}
		pct := 0.0
		if rt.Compared > 0 {
			pct = 100 * float64(rt.Mismatches) / float64(rt.Compared)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%d\t%d\t%.2f\t%.2f\t%s\t\n", rt.Route, rt.Compared, rt.Mismatches, pct, rt.RawMismatches, rt.ShadowErrors,
			rt.LatencyMS.Primary.P95, rt.LatencyMS.Shadow.P95, ratio)
	}
	tw.Flush()
	if len(r.Diffs) > 0 {
		section(w, "Differences (shadow against primary)", "PATH\tKIND\tCOUNT\tNOISY", func(tw io.Writer) {
			for _, d := range r.Diffs {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", d.Path, d.Kind, d.Count, d.Noisy)
			}
		})
	}
	if len(r.Noise.Suppressed) > 0 {
		title := fmt.Sprintf("Suppressed as noise (at least %d noisy and %.0f%% of a path's differences also differ between primary and secondary)",
			r.Noise.MinCount, 100*r.Noise.MinRatio)
		section(w, title, "ROUTE\tPATH\tNOISY\tOF\tRATIO", func(tw io.Writer) {
			for _, n := range r.Noise.Suppressed {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f%%\n", n.Route, n.Path, n.Noisy, n.Raw, 100*n.Ratio)
			}
		})
	}
	if len(r.Classes) > 0 {
		section(w, "Top diff classes (examples: GET /v1/launches/<id>/examples/<class>)", "CLASS\tROUTE\tCOUNT\tSHARE\tEXAMPLES\tDIFFERENCES", func(tw io.Writer) {
			for i, c := range r.Classes {
				if i == maxClassesShown {
					fmt.Fprintf(tw, "... %d more\t\t\t\t\t\n", len(r.Classes)-i)
					break
				}
				diffs := make([]string, len(c.Diffs))
				for j, d := range c.Diffs {
					diffs[j] = d.Path + " " + d.Kind
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f%%\t%d\t%s\n", c.Fingerprint, c.Route, c.Count, 100*c.ShareOfRoute, len(c.Examples), strings.Join(diffs, ", "))
			}
		})
	}
	fmt.Fprintln(w, strings.Repeat("-", 72))
}

// printAccounting writes the report's loss accounting: where every
// sampled envelope went, then a blank line.
func printAccounting(w io.Writer, a *api.Accounting) {
	if a == nil {
		return
	}
	estimated := ""
	if a.InFlightEstimated {
		estimated = " (estimated)"
	}
	fmt.Fprintf(w, "Accounting   sampled %d = compared %d + dropped %d%s + skipped %d%s + dead-lettered %d%s + in flight %d%s; unaccounted %d\n",
		a.Sampled, a.Compared, a.DroppedTotal(), reasons(a.Dropped), a.SkippedTotal(), reasons(a.Skipped),
		a.DeadLettered, reasons(a.DeadLetterReasons), a.InFlight, estimated, a.Unaccounted)
	fmt.Fprintf(w, "             published %d, replayed %d; counted by %d taps, %d runners, %d comparators\n",
		a.Published, a.Replayed, a.Processes.Taps, a.Processes.Runners, a.Processes.Comparators)
	if a.Error != "" {
		fmt.Fprintf(w, "             incomplete: %s\n", a.Error)
	}
	fmt.Fprintln(w)
}

// reasons formats counts by reason as " (a 1, b 2)", sorted by reason;
// empty when there are none.
func reasons(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// section writes a table of the report after a blank line and its title:
// the header, then the rows rows writes, aligned in columns.
func section(w io.Writer, title, header string, rows func(tw io.Writer)) {
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	tw.Flush()
}
