package compare

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Rules are a launch's comparison rules: the JSON object under "compare" in
// the launch API. The zero value compares with the defaults. See the
// package documentation and docs/compare.md for the syntax and semantics.
type Rules struct {
	// IgnorePaths lists body paths where nothing is compared: no Diff is
	// reported at or below a matching path. Wildcards: $.meta.* (every
	// direct child of meta), $..updated_at (that name at any depth),
	// $.items[*].price (in every element).
	IgnorePaths []string `json:"ignore_paths,omitempty"`
	// IgnoreHeaders are never compared, whatever the other lists say. A
	// trailing * matches a prefix: "X-Internal-*".
	IgnoreHeaders []string `json:"ignore_headers,omitempty"`
	// CompareHeaders are compared besides DefaultCompareHeaders; "*" means
	// every header but the volatile ones (DefaultVolatileHeaders), and a
	// trailing * matches a prefix. A header named exactly is compared even
	// when it is volatile by default.
	CompareHeaders []string `json:"compare_headers,omitempty"`
	// UnorderedArrays lists array paths compared as multisets; "$..*"
	// means every array.
	UnorderedArrays []string `json:"unordered_arrays,omitempty"`
	// ArrayKeys maps an array path to the member whose value identifies an
	// element, e.g. {"$.items": "id"}: elements are paired by that value,
	// so an insertion is one extra element and not a cascade.
	ArrayKeys map[string]string `json:"array_keys,omitempty"`
	// NumericTolerance makes two JSON numbers equal when they are close.
	NumericTolerance *Tolerance `json:"numeric_tolerance,omitempty"`
	// StatusClassOnly compares status codes by class: 200 and 204 match,
	// 200 and 500 do not.
	StatusClassOnly bool `json:"status_class_only,omitempty"`
	// RedactHeaders are masked in stored examples, besides the defaults
	// (DefaultRedactHeaders). A trailing * matches a prefix.
	RedactHeaders []string `json:"redact_headers,omitempty"`
	// RedactKeys are JSON keys and form fields masked in stored examples,
	// besides the defaults (DefaultRedactKeys); matched case-insensitively
	// and ignoring "-" and "_".
	RedactKeys []string `json:"redact_keys,omitempty"`
	// ContentTypeParams compares the parameters of Content-Type (charset,
	// boundary ...) besides its media type; off by default, since a
	// charset spelled differently rarely changes what a client reads.
	ContentTypeParams bool `json:"content_type_params,omitempty"`
	// SecurityHeaders compares the security headers (SecurityHeaders:
	// X-Content-Type-Options, Strict-Transport-Security,
	// Content-Security-Policy); off by default.
	SecurityHeaders bool `json:"security_headers,omitempty"`
}

// Tolerance makes numbers a and b equal when |a-b| <= Absolute or
// |a-b| <= Relative*max(|a|,|b|). Both must be finite and >= 0, and
// Relative at most 1.
type Tolerance struct {
	Absolute float64 `json:"absolute,omitempty"`
	Relative float64 `json:"relative,omitempty"`
}

// ErrInvalidRules is wrapped by every error of Rules.Validate and Compile.
var ErrInvalidRules = errors.New("invalid compare rules")

// RuleError is one problem with a Rules value. Its message names the field
// as the API spells it, the bad value and why, e.g.
// compare.ignore_paths[1]: "$.a[" is not a valid path: unexpected end after "[" at offset 4
type RuleError struct {
	Field  string // e.g. ignore_paths[1], array_keys["$.items"], numeric_tolerance.relative
	Value  string // the bad value, quoted if it is a string
	Reason string
}

func (e *RuleError) Error() string {
	return "compare." + e.Field + ": " + e.Value + " " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidRules) hold.
func (e *RuleError) Unwrap() error { return ErrInvalidRules }

// RuleErrors is what Validate returns when more than one thing is wrong.
type RuleErrors []*RuleError

func (es RuleErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns every problem, each wrapping ErrInvalidRules.
func (es RuleErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Validate checks the rules and returns nil, a *RuleError, or RuleErrors
// listing every problem; all wrap ErrInvalidRules.
func (r Rules) Validate() error {
	_, err := compile(r)
	return err
}

// IsZero reports whether the rules are all defaults.
func (r Rules) IsZero() bool {
	return len(r.IgnorePaths) == 0 && len(r.IgnoreHeaders) == 0 && len(r.CompareHeaders) == 0 &&
		len(r.UnorderedArrays) == 0 && len(r.ArrayKeys) == 0 && r.NumericTolerance == nil && !r.StatusClassOnly &&
		len(r.RedactHeaders) == 0 && len(r.RedactKeys) == 0 && !r.ContentTypeParams && !r.SecurityHeaders
}

// clone copies the lists, so that a Ruleset does not share them with its
// caller.
func (r Rules) clone() Rules {
	c := r
	c.IgnorePaths = slices.Clone(r.IgnorePaths)
	c.IgnoreHeaders = slices.Clone(r.IgnoreHeaders)
	c.CompareHeaders = slices.Clone(r.CompareHeaders)
	c.UnorderedArrays = slices.Clone(r.UnorderedArrays)
	c.RedactHeaders = slices.Clone(r.RedactHeaders)
	c.RedactKeys = slices.Clone(r.RedactKeys)
	c.ArrayKeys = maps.Clone(r.ArrayKeys)
	if r.NumericTolerance != nil {
		t := *r.NumericTolerance
		c.NumericTolerance = &t
	}
	return c
}

// Ruleset is a compiled, validated Rules value, safe for concurrent use. A
// nil *Ruleset means the defaults.
type Ruleset struct {
	rules         Rules
	m             *matcher // nil when no rule names a body path
	ignoreRoot    bool     // "$" is ignored: bodies are not compared
	tol           bool
	abs, rel      float64
	statusClass   bool
	headers       headerRules
	redactHeaders nameList
	redactKeys    map[string]bool // normalized (see normKey)
}

// Rules returns the rules the set was compiled from.
func (rs *Ruleset) Rules() Rules {
	if rs == nil {
		return Rules{}
	}
	return rs.rules
}

// Compile validates the rules and prepares them for Comparer. Compile the
// rules once per launch revision, not per pair.
func Compile(r Rules) (*Ruleset, error) { return compile(r) }

var defaultRuleset = func() *Ruleset {
	rs, err := compile(Rules{})
	if err != nil {
		panic(err) // the defaults are constants
	}
	return rs
}()

func orDefault(rs *Ruleset) *Ruleset {
	if rs == nil {
		return defaultRuleset
	}
	return rs
}

func compile(r Rules) (*Ruleset, error) {
	var errs RuleErrors
	bad := func(field, value, reason string) {
		errs = append(errs, &RuleError{Field: field, Value: value, Reason: reason})
	}
	tooMany := func(field string, n int) bool {
		if n > MaxRuleEntries {
			bad(field, strconv.Itoa(n)+" entries", fmt.Sprintf("are too many (at most %d)", MaxRuleEntries))
			return true
		}
		return false
	}
	rs := &Ruleset{rules: r.clone(), statusClass: r.StatusClassOnly}
	m := &matcher{}
	var starts []int
	addPath := func(field string, i int, p string, group int, key string) {
		f := fmt.Sprintf("%s[%d]", field, i)
		if group == groupKeyed {
			f = field + "[" + strconv.Quote(p) + "]"
		}
		steps, err := parsePattern(p)
		if err != nil {
			bad(f, strconv.Quote(p), "is not a valid path: "+err.Error())
			return
		}
		switch {
		case group == groupUnordered && p == "$..*":
			m.allUnord = true
			return
		case group == groupIgnore && len(steps) == 0:
			rs.ignoreRoot = true
		}
		starts = append(starts, len(m.pos))
		m.add(steps, group, key)
	}
	if !tooMany("ignore_paths", len(r.IgnorePaths)) {
		for i, p := range r.IgnorePaths {
			addPath("ignore_paths", i, p, groupIgnore, "")
		}
	}
	if !tooMany("unordered_arrays", len(r.UnorderedArrays)) {
		for i, p := range r.UnorderedArrays {
			addPath("unordered_arrays", i, p, groupUnordered, "")
		}
	}
	if !tooMany("array_keys", len(r.ArrayKeys)) {
		// Sorted, so that when several paths match one array the same
		// (lexically first) one wins every time.
		paths := make([]string, 0, len(r.ArrayKeys))
		for p := range r.ArrayKeys {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		for _, p := range paths {
			k := r.ArrayKeys[p]
			if k == "" || len(k) > 256 {
				bad("array_keys["+strconv.Quote(p)+"]", strconv.Quote(k), "is not a valid key field: it must be a member name of 1 to 256 bytes")
				continue
			}
			addPath("array_keys", 0, p, groupKeyed, k)
		}
	}
	if len(m.pos) > 0 || m.allUnord {
		m.build(starts)
		rs.m = m
	}
	if t := r.NumericTolerance; t != nil {
		check := func(field string, v, max float64) {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > max {
				limit := "a finite number >= 0"
				if max <= 1 {
					limit = "a number from 0 to 1"
				}
				bad("numeric_tolerance."+field, strconv.FormatFloat(v, 'g', -1, 64), "is not valid: it must be "+limit)
			}
		}
		check("absolute", t.Absolute, math.MaxFloat64)
		check("relative", t.Relative, 1)
		rs.tol, rs.abs, rs.rel = t.Absolute > 0 || t.Relative > 0, t.Absolute, t.Relative
	}
	headerList := func(field string, names []string, allowStar bool) nameList {
		var l nameList
		if tooMany(field, len(names)) {
			return l
		}
		for i, n := range names {
			if err := l.add(n, allowStar); err != nil {
				bad(fmt.Sprintf("%s[%d]", field, i), strconv.Quote(n), "is not a valid header name: "+err.Error())
			}
		}
		return l
	}
	rs.headers.ignore = headerList("ignore_headers", r.IgnoreHeaders, false)
	rs.headers.compare = headerList("compare_headers", r.CompareHeaders, true)
	rs.headers.contentTypeParams, rs.headers.security = r.ContentTypeParams, r.SecurityHeaders
	rs.redactHeaders = headerList("redact_headers", r.RedactHeaders, false)
	rs.redactKeys = map[string]bool{}
	if !tooMany("redact_keys", len(r.RedactKeys)) {
		for i, k := range r.RedactKeys {
			n := normKey(k)
			if n == "" || len(k) > 256 {
				bad(fmt.Sprintf("redact_keys[%d]", i), strconv.Quote(k), "is not a valid key: it must have 1 to 256 bytes besides - and _")
				continue
			}
			rs.redactKeys[n] = true
		}
	}
	switch len(errs) {
	case 0:
		return rs, nil
	case 1:
		return nil, errs[0]
	}
	return nil, errs
}

// nameList is a list of header names, exact or prefixes (written with a
// trailing *), matched case-insensitively.
type nameList struct {
	exact    map[string]bool // canonical names
	prefixes []string
	all      bool // "*"
}

func (l *nameList) add(n string, allowStar bool) error {
	if n == "*" {
		if !allowStar {
			return errors.New(`"*" alone is only allowed in compare_headers`)
		}
		l.all = true
		return nil
	}
	name, prefix := strings.CutSuffix(n, "*")
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > MaxHeaderNameLen {
		return fmt.Errorf("longer than %d bytes", MaxHeaderNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !isTokenByte(name[i]) {
			return fmt.Errorf("%s at offset %d is not allowed in a header name", quoteByte(name, i), i)
		}
	}
	if prefix {
		l.prefixes = append(l.prefixes, name)
		return nil
	}
	if l.exact == nil {
		l.exact = map[string]bool{}
	}
	l.exact[http.CanonicalHeaderKey(name)] = true
	return nil
}

// has reports whether a canonical header name is in the list; named says
// whether it is there by its exact name.
func (l *nameList) has(canon string) (in, named bool) {
	if l.exact[canon] {
		return true, true
	}
	if l.all {
		return true, false
	}
	for _, p := range l.prefixes {
		if len(canon) >= len(p) && strings.EqualFold(canon[:len(p)], p) {
			return true, false
		}
	}
	return false, false
}

// ValidHeaderName reports whether name is an HTTP field name (a non-empty
// RFC 9110 token).
func ValidHeaderName(name string) bool {
	for i := 0; i < len(name); i++ {
		if !isTokenByte(name[i]) {
			return false
		}
	}
	return name != ""
}

// isTokenByte reports whether c may appear in an HTTP field name (RFC 9110
// token).
func isTokenByte(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
