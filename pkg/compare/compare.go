package compare

import (
	"bytes"
	"fmt"
	"net/http"
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
	KindArrayOrder   = "array_order"
	KindBodyText     = "body_text"
	KindBodyBinary   = "body_binary"
	// KindFormatChanged is a value whose shape (Shape) the primary's
	// version did not produce, at a path where the values themselves are
	// noise: see Classify.
	KindFormatChanged = "format_changed"
)

// Kinds lists every Diff kind.
var Kinds = []string{KindStatus, KindHeader, KindMissingField, KindExtraField, KindTypeChanged,
	KindValueChanged, KindArrayLength, KindArrayOrder, KindBodyText, KindBodyBinary, KindFormatChanged}

// Paths of the diffs that are not inside a body. A header diff's path is
// HeaderPathPrefix + the canonical header name (http.CanonicalHeaderKey).
const (
	PathStatus       = "status"
	PathContentType  = "header.Content-Type"
	PathBody         = "$"
	HeaderPathPrefix = "header."
)

// Default bounds, see Comparer.
const (
	DefaultMaxDepth = 64
	DefaultMaxDiffs = 100
)

// Diff is one difference between the primary's and the shadow's response.
type Diff struct {
	// Path is where: "status", "header.<Canonical-Name>", or a body path
	// such as $.items[3].price.
	Path string
	// Generalized is Path with every array index replaced by [*]
	// ($.items[*].price), for grouping diffs across requests; for status
	// and header diffs it equals Path.
	Generalized string
	Kind        string
	// Before and After are the shapes of the primary's and the shadow's
	// values of a value_changed or type_changed diff in a JSON body, when
	// the Comparer was asked for them (Shapes); zero otherwise. Classify
	// reads them.
	Before, After Shape
}

// Result is the outcome of comparing one pair.
type Result struct {
	// Match is true when nothing differs: StatusMatch && HeadersMatch &&
	// BodyMatch, and equivalently len(Diffs) == 0.
	Match       bool
	StatusMatch bool
	// ContentTypeMatch is about the media type of Content-Type alone.
	ContentTypeMatch bool
	// HeadersMatch is true when every compared header matches,
	// Content-Type included.
	HeadersMatch bool
	BodyMatch    bool
	// BodyFormat is how the bodies were compared: FormatJSON, FormatForm,
	// FormatText, FormatBinary or FormatEmpty (both bodies empty).
	BodyFormat string
	// Diffs lists what differs, in the order found: status, Content-Type,
	// the other headers by name, then body paths in document order of the
	// primary.
	Diffs []Diff
	// Summary describes a text or binary body difference: the first
	// differing line of text bodies, lengths and sha256 prefixes of binary
	// ones; "" otherwise.
	Summary string
	// Note explains anything that made the comparison less than exact (a
	// truncated or undecodable body, JSON compared as text, a bound
	// reached); "" if none.
	Note string
	// Truncated is set when the comparison saw less than everything: a body
	// was truncated by its tap or by MaxBodyBytes, or a bound (MaxDepth,
	// MaxDiffs, the work bound of multiset matching) was reached.
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
	// MaxBodyBytes caps each body after decoding its Content-Encoding; a
	// longer one is compared on its first MaxBodyBytes bytes, flagged
	// Truncated. 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int
	// Rules are the launch's comparison rules; nil means the defaults.
	Rules *Ruleset
	// RequestHeaders are the headers of the pair's request, if known: the
	// credentials they carry (RequestEchoes) are masked in Summary when a
	// body echoes them, besides the credential-looking values masked
	// always (MaskSecrets).
	RequestHeaders http.Header
	// Shapes makes the value diffs of JSON bodies carry the shapes of
	// both values (Diff.Before, Diff.After), which Classify needs to tell
	// a change of format on a noisy path. It costs a classification per
	// value diff; the comparator asks for it when a secondary answered.
	Shapes bool
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
	rs := orDefault(c.Rules)
	st := state{maxDiffs: c.MaxDiffs, maxDepth: c.MaxDepth, maxBody: c.MaxBodyBytes, rs: rs, reqHeaders: c.RequestHeaders, shapes: c.Shapes}
	if st.maxDiffs <= 0 {
		st.maxDiffs = DefaultMaxDiffs
	}
	if st.maxDepth <= 0 {
		st.maxDepth = DefaultMaxDepth
	}
	if st.maxBody <= 0 {
		st.maxBody = DefaultMaxBodyBytes
	}
	var r Result
	r.StatusMatch = primary.Status == shadow.Status ||
		(rs.statusClass && statusClass(primary.Status) != 0 && statusClass(primary.Status) == statusClass(shadow.Status))
	if !r.StatusMatch {
		st.add(PathStatus, PathStatus, KindStatus)
	}
	r.ContentTypeMatch, r.HeadersMatch = st.compareHeaders(&rs.headers, primary.Headers, shadow.Headers)
	st.truncation("primary", primary)
	st.truncation("shadow", shadow)
	before := st.attempted
	r.BodyFormat = st.body(primary, shadow)
	r.BodyMatch = st.attempted == before
	r.Match = r.StatusMatch && r.HeadersMatch && r.BodyMatch
	r.Diffs = st.diffs
	r.Summary = st.summary
	r.Truncated = st.truncated
	if st.full {
		st.note("more than %d differences: only the first %d are listed", st.maxDiffs, st.maxDiffs)
	}
	r.Note = strings.Join(st.notes, "; ")
	return r
}

// statusClass is 1 to 5 for a valid status code, else 0.
func statusClass(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code / 100
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

// IsJSONSeq reports whether a media type is a sequence of JSON texts:
// NDJSON and JSON Lines (one text per line) or RFC 7464 JSON text
// sequences (each text after an RS byte). Such a body is compared as an
// array of its texts: paths are $[3].field.
func IsJSONSeq(mediaType string) bool {
	switch mediaType {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonl",
		"application/jsonlines", "application/x-jsonlines", "application/json-seq",
		"application/x-json-stream", "application/stream+json":
		return true
	}
	return false
}

// IsForm reports whether a media type is form-urlencoded.
func IsForm(mediaType string) bool {
	return mediaType == "application/x-www-form-urlencoded"
}

// IsText reports whether a media type is compared as text: text/*, HTML,
// XML, JavaScript, NDJSON, GraphQL, and JSON or forms that could not be
// parsed.
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
		"application/x-www-form-urlencoded", "application/x-ndjson", "application/graphql", "application/yaml":
		return true
	}
	return false
}

// state accumulates one comparison's diffs and notes.
type state struct {
	maxDiffs, maxDepth, maxBody int
	rs                          *Ruleset
	diffs                       []Diff
	attempted                   int32 // diffs found, recorded or not (int32: the state fits in 112 bytes)
	full                        bool
	truncated                   bool
	shapes                      bool
	notes                       []string
	summary                     string
	reqHeaders                  http.Header
}

func (s *state) add(path, generalized, kind string) {
	s.attempted++
	if len(s.diffs) >= s.maxDiffs {
		s.full = true
		s.truncated = true
		return
	}
	s.diffs = append(s.diffs, Diff{Path: path, Generalized: generalized, Kind: kind})
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

// body compares the bodies and returns the format they were compared in.
// The primary's media type picks the format.
func (s *state) body(p, sh *envelope.Response) string {
	if len(p.Body) == 0 && len(sh.Body) == 0 {
		return FormatEmpty
	}
	pmt := MediaType(first(values(p.Headers, "Content-Type")))
	format := FormatBinary
	switch {
	case IsJSONSeq(pmt):
		format = FormatNDJSON
	case IsJSON(pmt):
		format = FormatJSON
	case IsForm(pmt):
		format = FormatForm
	case IsText(pmt):
		format = FormatText
	}
	if s.rs.ignoreRoot {
		return format
	}
	a, okA := s.bodyFor("primary", p)
	b, okB := s.bodyFor("shadow", sh)
	if !okA || !okB {
		// One side cannot be decoded: compare what was sent, both raw.
		a, b = s.rawBody(p), s.rawBody(sh)
		s.binary(a, b)
		return FormatBinary
	}
	if len(a.b) == 0 && len(b.b) == 0 && bytesEqual(a, b) {
		return FormatEmpty
	}
	switch format {
	case FormatJSON:
		if a.truncated || b.truncated {
			s.note("JSON body truncated: compared as bytes")
			s.text(a, b)
			return FormatText
		}
		if bytes.Equal(a.b, b.b) {
			return FormatJSON
		}
		if !s.json(a.b, b.b) {
			s.text(a, b)
			return FormatText
		}
	case FormatNDJSON:
		if a.truncated || b.truncated {
			s.note("JSON sequence body truncated: compared as bytes")
			s.text(a, b)
			return FormatText
		}
		if bytes.Equal(a.b, b.b) {
			return FormatNDJSON
		}
		if !s.jsonSeq(a.b, b.b) {
			s.text(a, b)
			return FormatText
		}
	case FormatForm:
		if a.truncated || b.truncated {
			s.note("form body truncated: compared as text")
			s.text(a, b)
			return FormatText
		}
		if !s.form(a.b, b.b) {
			s.text(a, b)
			return FormatText
		}
	case FormatText:
		s.text(a, b)
	default:
		s.binary(a, b)
	}
	return format
}

func (s *state) text(a, b body) {
	if !bytesEqual(a, b) {
		s.add(PathBody, PathBody, KindBodyText)
		s.summary = textSummary(a, b, RequestEchoes(s.reqHeaders))
	}
}

func (s *state) binary(a, b body) {
	if !bytesEqual(a, b) {
		s.add(PathBody, PathBody, KindBodyBinary)
		s.summary = binarySummary(a, b)
	}
}

// parsed notes each body that did not parse as format, with why; false if
// either did not (both are then compared as text).
func (s *state) parsed(format string, errA, errB error) bool {
	if errA != nil {
		s.note("primary body is not valid %s (%v): compared as text", format, errA)
	}
	if errB != nil {
		s.note("shadow body is not valid %s (%v): compared as text", format, errB)
	}
	return errA == nil && errB == nil
}

// json compares two JSON bodies structurally; false if either does not
// parse (nothing was compared then).
func (s *state) json(pa, pb []byte) bool { return s.structural("JSON", (*doc).parse, pa, pb) }

// jsonSeq compares two sequences of JSON texts as arrays of them; false if
// either is not one (nothing was compared then).
func (s *state) jsonSeq(pa, pb []byte) bool {
	return s.structural("JSON sequence", (*doc).parseSeq, pa, pb)
}

// structural parses both bodies as format and walks them; false if either
// does not parse.
func (s *state) structural(format string, parse func(*doc, []byte) error, pa, pb []byte) bool {
	a, b := getDoc(), getDoc()
	defer putDoc(a)
	defer putDoc(b)
	if !s.parsed(format, parse(a, pa), parse(b, pb)) {
		return false
	}
	s.walk(a, b)
	return true
}

func (s *state) walk(a, b *doc) {
	w := newWalker(s, a, b)
	defer w.release()
	w.compare()
}
