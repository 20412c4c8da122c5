package compare

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

// Diff kinds. They are stored in ClickHouse (comparisons.diff_kinds), so
// their spelling is part of the analytics schema.
const (
	KindStatus       = "status"
	KindHeader       = "header"
	KindMissingField = "missing_field"
	KindExtraField   = "extra_field"
	KindTypeChanged  = "type_changed"
	KindValueChanged = "value_changed"
	KindArrayLength  = "array_length"
	KindBodyText     = "body_text"
	KindBodyBinary   = "body_binary"
)

// Paths of the diffs that are not inside a body.
const (
	PathStatus      = "status"
	PathContentType = "header.Content-Type"
	PathBody        = "$"
)

// Default bounds, see Comparer.
const (
	DefaultMaxDepth = 64
	DefaultMaxDiffs = 100
)

// Diff is one difference between the primary's and the shadow's response.
type Diff struct {
	Path string
	Kind string
}

// Result is the outcome of comparing one pair.
type Result struct {
	// Match is true when nothing differs: StatusMatch && ContentTypeMatch &&
	// BodyMatch, and equivalently len(Diffs) == 0.
	Match            bool
	StatusMatch      bool
	ContentTypeMatch bool
	BodyMatch        bool
	// Diffs lists what differs, in the order found: status, then
	// Content-Type, then body paths in document order of the primary.
	Diffs []Diff
	// Note explains anything that made the comparison less than exact (a
	// truncated body, JSON compared as bytes, a bound reached); "" if none.
	Note string
	// Truncated is set when the comparison saw less than everything: a body
	// was truncated by its tap, or MaxDepth or MaxDiffs was reached.
	Truncated bool
}

// Comparer holds the comparison settings; the zero value uses the defaults.
// It is safe for concurrent use.
type Comparer struct {
	// MaxDepth is how many levels of JSON containers are compared
	// structurally; deeper ones are compared as raw text. 0 means
	// DefaultMaxDepth.
	MaxDepth int
	// MaxDiffs is how many Diffs are recorded per pair; 0 means
	// DefaultMaxDiffs.
	MaxDiffs int
}

// Pair compares a pair with the default settings.
func Pair(primary, shadow *envelope.Response) Result {
	return Comparer{}.Pair(primary, shadow)
}

// Pair compares the shadow's response to the primary's. A nil response is
// treated as an empty one (status 0, no headers, no body).
func (c Comparer) Pair(primary, shadow *envelope.Response) Result {
	if primary == nil {
		primary = &envelope.Response{}
	}
	if shadow == nil {
		shadow = &envelope.Response{}
	}
	st := state{maxDiffs: c.MaxDiffs, maxDepth: c.MaxDepth}
	if st.maxDiffs <= 0 {
		st.maxDiffs = DefaultMaxDiffs
	}
	if st.maxDepth <= 0 {
		st.maxDepth = DefaultMaxDepth
	}
	var r Result
	r.StatusMatch = primary.Status == shadow.Status
	if !r.StatusMatch {
		st.add(PathStatus, KindStatus)
	}
	pmt := MediaType(primary.Headers.Get("Content-Type"))
	smt := MediaType(shadow.Headers.Get("Content-Type"))
	r.ContentTypeMatch = pmt == smt
	if !r.ContentTypeMatch {
		st.add(PathContentType, KindHeader)
	}
	st.truncation("primary", primary)
	st.truncation("shadow", shadow)
	before := st.attempted
	st.body(pmt, primary, shadow)
	r.BodyMatch = st.attempted == before
	r.Match = r.StatusMatch && r.ContentTypeMatch && r.BodyMatch
	r.Diffs = st.diffs
	r.Truncated = st.truncated
	if st.full {
		st.note("more than %d differences: only the first %d are listed", st.maxDiffs, st.maxDiffs)
	}
	r.Note = strings.Join(st.notes, "; ")
	return r
}

// MediaType returns the media type of a Content-Type value, lower-cased
// and without parameters; "" for an empty value.
func MediaType(contentType string) string {
	// Parameters are cut, not parsed, so a malformed one cannot make two
	// equal types differ, and the common case does not allocate.
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// IsJSON reports whether a media type (as returned by MediaType) is JSON.
func IsJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

// IsText reports whether a media type is compared as text rather than
// binary when bodies are compared as bytes.
func IsText(mediaType string) bool {
	switch {
	case strings.HasPrefix(mediaType, "text/"),
		IsJSON(mediaType),
		strings.HasSuffix(mediaType, "+xml"),
		strings.HasSuffix(mediaType, "html"):
		return true
	}
	switch mediaType {
	case "application/xml", "application/javascript", "application/ecmascript",
		"application/x-www-form-urlencoded", "application/x-ndjson", "application/graphql":
		return true
	}
	return false
}

// state accumulates one comparison's diffs and notes.
type state struct {
	maxDiffs, maxDepth int
	diffs              []Diff
	attempted          int // diffs found, recorded or not
	full               bool
	truncated          bool
	notes              []string
}

func (s *state) add(path, kind string) {
	s.attempted++
	if len(s.diffs) >= s.maxDiffs {
		s.full = true
		s.truncated = true
		return
	}
	s.diffs = append(s.diffs, Diff{Path: path, Kind: kind})
}

func (s *state) truncation(side string, r *envelope.Response) {
	if !r.BodyTruncated {
		return
	}
	s.truncated = true
	if r.BodySize >= 0 {
		s.note("%s body truncated: compared the first %d of %d bytes", side, len(r.Body), r.BodySize)
	} else {
		s.note("%s body truncated: compared the first %d bytes", side, len(r.Body))
	}
}

func (s *state) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

func (s *state) body(primaryType string, p, sh *envelope.Response) {
	if len(p.Body) == 0 && len(sh.Body) == 0 {
		return
	}
	kind := KindBodyBinary
	if IsText(primaryType) {
		kind = KindBodyText
	}
	if !IsJSON(primaryType) {
		s.bytes(kind, p, sh)
		return
	}
	if p.BodyTruncated || sh.BodyTruncated {
		s.note("JSON body truncated: compared as bytes")
		s.bytes(kind, p, sh)
		return
	}
	if bytes.Equal(p.Body, sh.Body) {
		return
	}
	a, b := getDoc(), getDoc()
	defer putDoc(a)
	defer putDoc(b)
	errA, errB := a.parse(p.Body), b.parse(sh.Body)
	if errA != nil || errB != nil {
		if errA != nil {
			s.note("primary body is not valid JSON (%v): compared as bytes", errA)
		}
		if errB != nil {
			s.note("shadow body is not valid JSON (%v): compared as bytes", errB)
		}
		s.bytes(kind, p, sh)
		return
	}
	w := walker{st: s, a: a, b: b}
	w.value(0, 0, 0)
	if w.cutPath != "" {
		s.truncated = true
		s.note("JSON nested deeper than %d levels (first at %s): compared as text below that depth", s.maxDepth, w.cutPath)
	}
}

// bytes compares bodies byte for byte, and their full sizes when both are
// known, reporting one diff at the body's root.
func (s *state) bytes(kind string, p, sh *envelope.Response) {
	equal := bytes.Equal(p.Body, sh.Body)
	if equal {
		ps, pok := fullSize(p)
		ss, sok := fullSize(sh)
		if pok && sok && ps != ss {
			equal = false
		}
	}
	if !equal {
		s.add(PathBody, kind)
	}
}

// fullSize is the size of the whole body, if known.
func fullSize(r *envelope.Response) (int64, bool) {
	if !r.BodyTruncated {
		return int64(len(r.Body)), true
	}
	if r.BodySize >= int64(len(r.Body)) {
		return r.BodySize, true
	}
	return 0, false
}
