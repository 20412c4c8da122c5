package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// PrintReport writes the report as readable tables.
func PrintReport(w io.Writer, r *api.Report) { PrintReportExamples(w, r, nil) }

// PrintReportExamples writes the report as readable tables, every diff
// class with its differences; examples maps a class's fingerprint to one
// of its stored examples (see Examples), from which each difference shows
// its before → after value (already redacted by the comparator).
func PrintReportExamples(w io.Writer, r *api.Report, examples map[string]*api.Example) {
	l := r.Launch
	if l == nil {
		l = &launch.Launch{}
	}
	fmt.Fprintf(w, "Launch %s (%s): %s, sampling %.4g%%\n\n", l.Name, l.ID, l.Status, l.SamplePercent)
	fmt.Fprintf(w, "Compared %d pairs: %d mismatches (%.1f%%) after noise, %d raw (%.1f%%); %d shadow errors; %d pairs with a secondary\n",
		r.Totals.Compared, r.Totals.Mismatches, 100*r.Totals.MismatchRate, r.Totals.RawMismatches, 100*r.Totals.RawMismatchRate,
		r.Totals.ShadowErrors, r.Totals.WithSecondary)
	fmt.Fprintf(w, "Latency ms   primary p50 %.2f  p95 %.2f  p99 %.2f | shadow p50 %.2f  p95 %.2f  p99 %.2f",
		r.LatencyMS.Primary.P50, r.LatencyMS.Primary.P95, r.LatencyMS.Primary.P99, r.LatencyMS.Shadow.P50, r.LatencyMS.Shadow.P95, r.LatencyMS.Shadow.P99)
	if sec := r.LatencyMS.Secondary; sec != nil {
		fmt.Fprintf(w, " | secondary p50 %.2f  p95 %.2f  p99 %.2f", sec.P50, sec.P95, sec.P99)
	}
	fmt.Fprint(w, "\n\n")
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
	printClasses(w, r, examples)
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

// printClasses lists every diff class, then each of its differences with
// one before → after value per path when the class has an example.
func printClasses(w io.Writer, r *api.Report, examples map[string]*api.Example) {
	if len(r.Classes) == 0 {
		return
	}
	id := "<id>"
	if r.Launch != nil && r.Launch.ID != "" {
		id = r.Launch.ID
	}
	fmt.Fprintf(w, "\nDiff classes: %d (examples: GET /v1/launches/%s/examples/<class>)\n", len(r.Classes), id)
	for _, c := range r.Classes {
		fmt.Fprintf(w, "\n%s  %s  %d pairs, %.1f%% of the route, %d examples\n", c.Fingerprint, c.Route, c.Count, 100*c.ShareOfRoute, len(c.Examples))
		ex := examples[c.Fingerprint]
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, d := range c.Diffs {
			change := ""
			if ex != nil {
				change = BeforeAfter(ex, d)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", d.Path, d.Kind, change)
		}
		tw.Flush()
	}
}

// maxValueShown bounds each side of a before → after, in bytes.
const maxValueShown = 60

// BeforeAfter shows how one difference of a class (a path as the report
// generalizes it, and a kind) looks in one of its examples: the primary's
// value → the shadow's, as stored (redacted), "(absent)" for a side
// without one; with their shapes for a format_changed. It is "" when the
// example has no such difference.
func BeforeAfter(ex *api.Example, d api.PathKind) string {
	path := ""
	for _, p := range ex.Diffs {
		g := compare.Generalize(p.Path)
		if p.Kind == d.Kind && (g == d.Path || d.Kind == compare.KindFormatChanged && strings.HasPrefix(d.Path, g+" (")) {
			path = p.Path
			break
		}
	}
	switch {
	case path == "":
		return ""
	case path == compare.PathStatus:
		return fmt.Sprintf("%d → %d", ex.Primary.Status, ex.Shadow.Status)
	case strings.HasPrefix(path, compare.HeaderPathPrefix):
		name := strings.TrimPrefix(path, compare.HeaderPathPrefix)
		return headerValue(ex.Primary.Headers, name) + " → " + headerValue(ex.Shadow.Headers, name)
	case d.Kind == compare.KindBodyText || d.Kind == compare.KindBodyBinary:
		return fmt.Sprintf("%d bytes → %d bytes", len(ex.Primary.Body), len(ex.Shadow.Body))
	}
	before, bs := bodyValue(ex.Primary, path)
	after, as := bodyValue(ex.Shadow, path)
	if d.Kind == compare.KindFormatChanged {
		return fmt.Sprintf("%s (%s) → %s (%s)", before, bs, after, as)
	}
	return before + " → " + after
}

// bodyValue is the value at a body path of one side of an example, shown
// bounded, and its shape.
func bodyValue(r api.ExampleResponse, path string) (string, compare.Shape) {
	v, err := compare.Lookup(compare.MediaType(headerFirst(r.Headers, "Content-Type")), []byte(r.Body), path)
	switch {
	case errors.Is(err, compare.ErrNoValue):
		return "(absent)", compare.Shape{}
	case err != nil:
		return "(unreadable)", compare.Shape{}
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) == nil {
		v = buf.Bytes()
	}
	return bounded(string(v)), compare.ShapeOfJSON(v)
}

// headerValue shows a header of a stored example, its values joined,
// "(absent)" if it has none.
func headerValue(raw json.RawMessage, name string) string {
	v := headerValues(raw, name)
	if len(v) == 0 {
		return "(absent)"
	}
	return strconv.Quote(bounded(strings.Join(v, ", ")))
}

func headerFirst(raw json.RawMessage, name string) string {
	if v := headerValues(raw, name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// headerValues reads a header of a stored example's headers (a JSON
// object of arrays), whatever the case of its name; nil if absent or
// unreadable.
func headerValues(raw json.RawMessage, name string) []string {
	var h http.Header
	if json.Unmarshal(raw, &h) != nil {
		return nil
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// bounded cuts s to maxValueShown bytes on a character boundary, marked
// with "…".
func bounded(s string) string {
	if len(s) <= maxValueShown {
		return s
	}
	cut := maxValueShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
