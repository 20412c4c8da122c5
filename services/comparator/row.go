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
)

// ClickHouse DateTime is an unsigned 32-bit count of seconds.
var (
	minTS = time.Unix(0, 0)
	maxTS = time.Unix(1<<32-1, 0)
)

// BuildRow compares a pair and turns it into its comparisons row. A shadow
// that failed gives a row with match=0, shadow_status=0, the error and its
// kind, and no diffs. The only error is a pair whose timestamp the table
// cannot hold; it wraps envelope.ErrMalformed.
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
	if p.Shadow.Error != "" {
		row.ShadowError = truncate(p.Shadow.Error, maxErrorLen)
		row.ShadowErrorKind = p.Shadow.ErrorKind
		if row.ShadowErrorKind == "" {
			row.ShadowErrorKind = envelope.ErrorOther
		}
		return row, nil
	}
	row.ShadowStatus = status(p.Shadow.Status)
	r := c.Pair(&e.Primary, &p.Shadow.Response)
	row.Match, row.StatusMatch, row.ContentTypeMatch, row.BodyMatch = r.Match, r.StatusMatch, r.ContentTypeMatch, r.BodyMatch
	if len(r.Diffs) > 0 {
		row.DiffPaths = make([]string, len(r.Diffs))
		row.DiffKinds = make([]string, len(r.Diffs))
		for i, d := range r.Diffs {
			row.DiffPaths[i], row.DiffKinds[i] = d.Path, d.Kind
		}
	}
	row.CompareNote = r.Note
	return row, nil
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
