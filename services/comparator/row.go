package comparator

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
)

// Bounds on the free-form strings a row carries: the request path and the
// shadow error come from outside and must not bloat the table.
const (
	maxPathLen   = 2048
	maxMethodLen = 32
	maxErrorLen  = 1024
	// maxSummaryLen bounds diff_summary (the engine keeps it short; this
	// is a guard, not a format).
	maxSummaryLen = 1024
)

// ClickHouse DateTime is an unsigned 32-bit count of seconds.
var (
	minTS = time.Unix(0, 0)
	maxTS = time.Unix(1<<32-1, 0)
)

// BuildRow compares a pair and turns it into its comparisons row. A shadow
// that failed gives a row with match=0, shadow_status=0, the error and its
// kind, and no diffs.
//
// When the pair carries a secondary that answered, the primary is also
// compared with the secondary under the same rules, and each shadow diff
// whose path differs there too is marked as noise (DiffNoise), unless
// compare.Classify finds it real: a value whose shape the primary's version
// did not produce becomes a format_changed diff (its generalized path
// names the change of shape, so a suppressed noisy path does not hide it).
// The fingerprint covers only the real diffs. Match keeps its meaning:
// nothing differs at all after the launch's rules, noise included. A
// secondary that failed is recorded (SecondaryError) with HasSecondary
// false, and no diff is noise.
//
// The only error is a pair whose timestamp the table cannot hold; it wraps
// envelope.ErrMalformed. RulesRevision is left for the caller, who knows
// which revision c.Rules comes from.
func BuildRow(c compare.Comparer, p *envelope.Pair) (analytics.Row, error) {
	e := &p.Envelope
	if e.ReceivedAt.Before(minTS) || e.ReceivedAt.After(maxTS) {
		return analytics.Row{}, fmt.Errorf("%w: envelope %s received_at %s is outside the range ClickHouse DateTime holds",
			envelope.ErrMalformed, e.ID, e.ReceivedAt.Format(time.RFC3339))
	}
	row := analytics.Row{
		LaunchID:             e.LaunchID,
		EnvelopeID:           e.ID,
		TS:                   e.ReceivedAt,
		TapID:                e.TapID,
		Method:               truncate(e.Request.Method, maxMethodLen),
		Route:                compare.NormalizeRoute(e.Request.Path),
		Path:                 truncate(e.Request.Path, maxPathLen),
		PrimaryStatus:        status(e.Primary.Status),
		PrimaryLatencyUS:     latency(e.Primary.LatencyUS),
		ShadowLatencyUS:      latency(p.Shadow.LatencyUS),
		RequestBodyTruncated: e.Request.BodyTruncated,
		PrimaryBodyTruncated: e.Primary.BodyTruncated,
		ShadowBodyTruncated:  p.Shadow.BodyTruncated,
	}
	sec := p.Secondary
	if sec != nil {
		row.SecondaryLatencyUS = latency(sec.LatencyUS)
		if failed(sec) {
			row.SecondaryError = errorText(sec)
			sec = nil
		} else {
			row.HasSecondary = true
			row.SecondaryStatus = status(sec.Status)
		}
	}
	if failed(&p.Shadow) {
		row.ShadowError = errorText(&p.Shadow)
		row.ShadowErrorKind = p.Shadow.ErrorKind
		if row.ShadowErrorKind == "" {
			row.ShadowErrorKind = envelope.ErrorOther
		}
		return row, nil
	}
	row.ShadowStatus = status(p.Shadow.Status)
	c.RequestHeaders = e.Request.Headers // echoed credentials are masked in the summary
	// With a secondary, value diffs carry their shapes: a noisy path whose
	// shadow value has a shape the primary's version did not produce is a
	// format_changed diff, not noise (compare.Classify).
	c.Shapes = sec != nil
	r := c.Pair(&e.Primary, &p.Shadow.Response)
	row.Match, row.StatusMatch, row.ContentTypeMatch, row.BodyMatch = r.Match, r.StatusMatch, r.ContentTypeMatch, r.BodyMatch
	row.HeadersMatch, row.BodyFormat = r.HeadersMatch, r.BodyFormat
	row.DiffSummary = truncate(r.Summary, maxSummaryLen)
	row.CompareNote = compare.MaskSecretsString(envelope.ScrubError(r.Note), nil)
	if len(r.Diffs) == 0 {
		return row, nil
	}
	var secDiffs []compare.Diff
	if sec != nil {
		secDiffs = c.Pair(&e.Primary, &sec.Response).Diffs
	}
	diffs, noise := compare.Classify(r.Diffs, secDiffs)
	n := len(diffs)
	realDiffs := make([]compare.Diff, 0, n)
	row.DiffPaths, row.DiffKinds = make([]string, n), make([]string, n)
	row.DiffGeneralized, row.DiffNoise = make([]string, n), make([]bool, n)
	for i, d := range diffs {
		row.DiffPaths[i], row.DiffKinds[i], row.DiffGeneralized[i] = d.Path, d.Kind, d.Generalized
		if d.Generalized == "" {
			row.DiffGeneralized[i] = compare.Generalize(d.Path)
		}
		row.DiffNoise[i] = noise[i]
		if !noise[i] {
			realDiffs = append(realDiffs, d)
		}
	}
	row.Fingerprint = compare.Fingerprint(row.Route, realDiffs)
	return row, nil
}

// failed reports whether a replay target gave no complete answer.
func failed(o *envelope.Outcome) bool { return o.Error != "" || o.ErrorKind != "" }

// errorText is what a row records of a failed target: its error, every
// URL in it without query, fragment or userinfo (a runner scrubs them
// already; a pair from another may not) and credential-looking values
// masked, bounded; or its kind when it has no message.
func errorText(o *envelope.Outcome) string {
	if o.Error == "" {
		return o.ErrorKind
	}
	return truncate(compare.MaskSecretsString(envelope.ScrubError(o.Error), nil), maxErrorLen)
}

func status(code int) uint16 {
	if code < 0 || code > 65535 {
		return 0
	}
	return uint16(code)
}

func latency(us int64) uint64 {
	if us < 0 {
		return 0
	}
	return uint64(us)
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for k := 0; k < utf8.UTFMax-1 && len(s) > 0; k++ {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}
