package compare

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

var fuzzSeeds = [][2]string{
	{`{"a":1}`, `{"a":1.0}`},
	{`{"user":{"email":"a@x"}}`, `{"user":{"email":"b@x"}}`},
	{`[1,2,3]`, `[1,2]`},
	{`{"a":[{"b":null}],"c":"\u00e9"}`, `{"c":"é","a":[{"b":false}]}`},
	{`{"a":1,"a":2}`, `{"a":2}`},
	{`[[[[[[[[[[1]]]]]]]]]]`, `[[[[[[[[[[2]]]]]]]]]]`},
	{`12345678901234567890`, `12345678901234567891`},
	{`{"a b":{"x-y":[true]}}`, `{"a b":{"x-y":[1]}}`},
	{`{"a":`, `{"a":1}`},
	{``, `{}`},
	{"\"\xff\"", "\"\xfe\""},
}

// fuzzRules are the rule sets FuzzPair picks from with a bit mask.
var fuzzRules = []Rules{
	{IgnorePaths: []string{"$..a", "$[1]", `$["a b"].*`}},
	{UnorderedArrays: []string{"$..*"}},
	{ArrayKeys: map[string]string{"$": "id", "$..items": "id"}},
	{UnorderedArrays: []string{"$.a", "$[*]"}},
	{StatusClassOnly: true, IgnoreHeaders: []string{"Content-Type"}, CompareHeaders: []string{"*"}},
	{NumericTolerance: &Tolerance{Absolute: 0.5, Relative: 0.01}},
}

func fuzzRuleset(t *testing.T, mask uint8) (*Ruleset, bool) {
	var r Rules
	tol := false
	for i, fr := range fuzzRules {
		if mask&(1<<i) == 0 {
			continue
		}
		r.IgnorePaths = append(r.IgnorePaths, fr.IgnorePaths...)
		r.UnorderedArrays = append(r.UnorderedArrays, fr.UnorderedArrays...)
		r.IgnoreHeaders = append(r.IgnoreHeaders, fr.IgnoreHeaders...)
		r.CompareHeaders = append(r.CompareHeaders, fr.CompareHeaders...)
		r.StatusClassOnly = r.StatusClassOnly || fr.StatusClassOnly
		if fr.ArrayKeys != nil {
			r.ArrayKeys = fr.ArrayKeys
		}
		if fr.NumericTolerance != nil {
			r.NumericTolerance, tol = fr.NumericTolerance, true
		}
	}
	rs, err := Compile(r)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return rs, tol
}

// fuzzEncode applies a Content-Encoding picked by enc: 0 none, 1 gzip,
// 2 deflate, 3 br, 4 zstd, 5 a gzip header on a body that is not gzip,
// 6 an unknown coding, 7 gzip then br.
func fuzzEncode(r *envelope.Response, enc uint8) {
	switch enc % 8 {
	case 1:
		encoded(r, "gzip")
	case 2:
		encoded(r, "deflate")
	case 3:
		encoded(r, "br")
	case 4:
		encoded(r, "zstd")
	case 5:
		r.Headers.Set("Content-Encoding", "gzip")
	case 6:
		r.Headers.Set("Content-Encoding", "x-unknown")
	case 7:
		encoded(r, "gzip")
		encoded(r, "br")
		r.Headers.Set("Content-Encoding", "gzip, br")
	}
}

func FuzzPair(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add(200, 200, "application/json", "application/json", []byte(s[0]), []byte(s[1]), false, i%3 == 0, uint8(i), uint8(i*7), uint8(i%8), uint8(i*11))
	}
	f.Add(200, 503, "text/html", "text/plain", []byte("<p>"), []byte("<p>"), true, true, uint8(0), uint8(0), uint8(0), uint8(0))
	f.Add(200, 200, form, form, []byte("a=1&b=2&b=3"), []byte("b=3&b=2&a=%20"), false, false, uint8(0), uint8(0), uint8(1), uint8(2))
	f.Add(200, 204, "image/png", "image/png", []byte("\x89PNG"), []byte("\x89PNG!"), false, false, uint8(5), uint8(5), uint8(3), uint8(16))
	f.Add(200, 200, js, js, []byte(`{"items":[{"id":1,"a":1},{"id":2}]}`), []byte(`{"items":[{"id":2},{"id":1,"a":2},{"id":3}]}`), false, false,
		uint8(0), uint8(0), uint8(4), uint8(0x3f))
	f.Fuzz(func(t *testing.T, ps, ss int, pct, sct string, pb, sb []byte, ptrunc, strunc bool, maxDiffs, maxDepth, enc, rules uint8) {
		p := &envelope.Response{Status: ps, Headers: http.Header{"Content-Type": {pct}}, Body: pb, BodySize: int64(len(pb)), BodyTruncated: ptrunc}
		s := &envelope.Response{Status: ss, Headers: http.Header{"Content-Type": {sct}}, Body: sb, BodySize: int64(len(sb)) + 1, BodyTruncated: strunc}
		fuzzEncode(p, enc)
		fuzzEncode(s, enc>>3)
		rs, tol := fuzzRuleset(t, rules)
		c := Comparer{MaxDiffs: int(maxDiffs % 8), MaxDepth: int(maxDepth % 80), MaxBodyBytes: 1 << (10 + maxDepth%8), Rules: rs}
		r := c.Pair(p, s)
		checkInvariants(t, c, p, s, r)

		if self := c.Pair(p, p); !self.Match {
			t.Fatalf("a response does not match itself: %+v", self)
		}
		if MediaType(pct) == MediaType(sct) && !tol && !r.Truncated {
			if back := c.Pair(s, p); back.Match != r.Match || back.BodyMatch != r.BodyMatch {
				t.Fatalf("not symmetric: Match %v one way, %v the other (BodyMatch %v, %v)", r.Match, back.Match, r.BodyMatch, back.BodyMatch)
			}
		}
	})
}

func checkInvariants(t *testing.T, c Comparer, p, s *envelope.Response, r Result) {
	t.Helper()
	if r.Match != (len(r.Diffs) == 0) {
		t.Fatalf("Match = %v with %d diffs: %+v", r.Match, len(r.Diffs), r)
	}
	if r.Match != (r.StatusMatch && r.HeadersMatch && r.BodyMatch) {
		t.Fatalf("Match = %v but parts %v %v %v", r.Match, r.StatusMatch, r.HeadersMatch, r.BodyMatch)
	}
	if !r.ContentTypeMatch && r.HeadersMatch {
		t.Fatalf("HeadersMatch without ContentTypeMatch")
	}
	if c.Rules == nil || !c.Rules.statusClass {
		if r.StatusMatch != (p.Status == s.Status) {
			t.Fatalf("StatusMatch = %v for %d, %d", r.StatusMatch, p.Status, s.Status)
		}
	} else if p.Status == s.Status && !r.StatusMatch {
		t.Fatalf("StatusMatch = false for %d, %d", p.Status, s.Status)
	}
	maxDiffs := c.MaxDiffs
	if maxDiffs <= 0 {
		maxDiffs = DefaultMaxDiffs
	}
	if len(r.Diffs) > maxDiffs {
		t.Fatalf("%d diffs recorded, limit %d", len(r.Diffs), maxDiffs)
	}
	if (p.BodyTruncated || s.BodyTruncated) && !r.Truncated {
		t.Fatalf("a truncated body must set Truncated")
	}
	if r.Truncated && r.Note == "" {
		t.Fatalf("Truncated without a Note")
	}
	switch r.BodyFormat {
	case FormatJSON, FormatForm, FormatText, FormatBinary, FormatEmpty:
	default:
		t.Fatalf("BodyFormat %q", r.BodyFormat)
	}
	for _, d := range r.Diffs {
		if !slices.Contains(Kinds, d.Kind) {
			t.Fatalf("unknown kind %q", d.Kind)
		}
		if d.Path != PathStatus && !strings.HasPrefix(d.Path, HeaderPathPrefix) && !strings.HasPrefix(d.Path, "$") {
			t.Fatalf("bad path %q", d.Path)
		}
		if d.Generalized != Generalize(d.Path) {
			t.Fatalf("Generalized %q for %q", d.Generalized, d.Path)
		}
		if (d.Kind == KindBodyText || d.Kind == KindBodyBinary) && r.Summary == "" {
			t.Fatalf("%s diff without a Summary", d.Kind)
		}
	}
}

// FuzzJSONEqual checks the structural comparison against encoding/json:
// both documents are decoded and re-encoded (so member names are unique
// and strings valid UTF-8), and must match exactly when the decoded values
// are equal, numbers compared as exact rationals.
func FuzzJSONEqual(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		va, ok := decodeRef(a)
		if !ok {
			return
		}
		vb, ok := decodeRef(b)
		if !ok {
			return
		}
		ca, err1 := json.Marshal(va)
		cb, err2 := json.Marshal(vb)
		if err1 != nil || err2 != nil {
			return
		}
		want := refEqual(va, vb)
		c := Comparer{MaxDepth: 1 << 20, MaxDiffs: 1}
		got := c.Pair(&envelope.Response{Headers: http.Header{"Content-Type": {js}}, Body: ca},
			&envelope.Response{Headers: http.Header{"Content-Type": {js}}, Body: cb})
		if got.BodyMatch != want || (got.Truncated && !strings.HasPrefix(got.Note, "more than 1 differences")) {
			t.Fatalf("%s vs %s: BodyMatch %v (note %q), encoding/json says equal=%v", ca, cb, got.BodyMatch, got.Note, want)
		}
	})
}

// decodeRef decodes with json.Number, refusing numbers whose exact value
// would be expensive to build as a big.Rat.
func decodeRef(data []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	if _, err := dec.Token(); err == nil {
		return nil, false
	}
	return v, sane(v)
}

func sane(v any) bool {
	switch x := v.(type) {
	case json.Number:
		// big.Rat cannot hold huge exponents: leave those to TestNumEqual.
		if i := strings.IndexAny(string(x), "eE"); i >= 0 {
			if e, err := strconv.Atoi(string(x[i+1:])); err != nil || e > 1000 || e < -1000 {
				return false
			}
		}
		return len(x) < 64
	case []any:
		for _, e := range x {
			if !sane(e) {
				return false
			}
		}
	case map[string]any:
		for _, e := range x {
			if !sane(e) {
				return false
			}
		}
	}
	return true
}

func refEqual(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		rx, ok1 := new(big.Rat).SetString(string(x))
		ry, ok2 := new(big.Rat).SetString(string(y))
		return ok1 && ok2 && rx.Cmp(ry) == 0
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !refEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !refEqual(v, w) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

// FuzzUnordered checks multiset comparison against permutations: every
// array of a valid document reversed, at every depth, matches the original
// when all arrays are unordered; reversing the top-level array alone is at
// most one array_order by default.
func FuzzUnordered(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s[0]))
		f.Add([]byte(s[1]))
	}
	f.Add([]byte(`[{"a":[1,2,{"b":[3,3,4]}]},[5,6],7,7]`))
	rs := compiled(f, Rules{UnorderedArrays: []string{"$..*"}})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, ok := decodeRef(data)
		if !ok {
			return
		}
		orig, err1 := json.Marshal(v)
		rev, err2 := json.Marshal(reverseArrays(v, true))
		top, err3 := json.Marshal(reverseArrays(v, false))
		if err1 != nil || err2 != nil || err3 != nil {
			return
		}
		c := Comparer{MaxDepth: 1 << 10, Rules: rs}
		if r := c.Pair(jsonResp(orig), jsonResp(rev)); !r.Match {
			t.Fatalf("%s vs %s with every array unordered: %+v", orig, rev, r)
		}
		r := Comparer{MaxDepth: 1 << 10}.Pair(jsonResp(orig), jsonResp(top))
		if !r.Match && (len(r.Diffs) != 1 || r.Diffs[0] != (Diff{Path: "$", Generalized: "$", Kind: KindArrayOrder})) {
			t.Fatalf("%s vs %s: %+v", orig, top, r)
		}
	})
}

func reverseArrays(v any, deep bool) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			if deep {
				e = reverseArrays(e, true)
			}
			out[len(x)-1-i] = e
		}
		return out
	case map[string]any:
		if !deep {
			return x
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = reverseArrays(e, true)
		}
		return out
	}
	return v
}

// FuzzRedact checks that redaction never lets a sensitive value through: a
// marker that a valid JSON body holds only under sensitive keys is not in
// the output, the output is valid JSON, and redacting again changes
// nothing.
func FuzzRedact(f *testing.F) {
	f.Add([]byte(`{"password":"MARK","a":[{"token":{"x":"MARK"}}],"b":"c"}`), false)
	f.Add([]byte(`{"user":{"name":"n","secret":["MARK",1]}}`), true)
	f.Add([]byte(`[{"api_key":"MARK"},{"Access-Token":"MARK"}]`), false)
	f.Add([]byte(`{"k":"-----BEGIN RSA PRIVATE KEY-----\nMIIEpA==\\n\"x","j":"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig","n":1}`), false)
	f.Fuzz(func(t *testing.T, body []byte, truncated bool) {
		r := &envelope.Response{Headers: http.Header{"Content-Type": {js}}, Body: body, BodySize: int64(len(body)), BodyTruncated: truncated}
		got := Redact(r, nil, nil)
		again := Redact(&got, nil, nil)
		if !bytes.Equal(again.Body, got.Body) {
			t.Fatalf("not idempotent: %q then %q", got.Body, again.Body)
		}
		var dd doc
		if truncated || dd.parse(body) != nil {
			return
		}
		if !json.Valid(got.Body) {
			t.Fatalf("redacted %q into invalid JSON %q", body, got.Body)
		}
		if bytes.Contains(body, []byte("MARK")) && !visible(&dd, 0, "MARK") && bytes.Contains(got.Body, []byte("MARK")) {
			t.Fatalf("MARK leaked: %q -> %q", body, got.Body)
		}
	})
}

// visible reports whether s occurs in the subtree of node i of d outside
// the values of sensitive keys, every member counted (duplicates too).
func visible(d *doc, i int32, s string) bool {
	n := &d.nodes[i]
	switch n.kind {
	case tString:
		raw := d.raw(i)
		return strings.Contains(unescape(raw[1:len(raw)-1]), s)
	case tNumber:
		return strings.Contains(string(d.raw(i)), s)
	case tArray:
		for c, k := i+1, int32(0); k < n.n; c, k = d.nodes[c].next, k+1 {
			if visible(d, c, s) {
				return true
			}
		}
	case tObject:
		for c, k := i+1, int32(0); k < n.n; c, k = d.nodes[c].next, k+1 {
			name := d.key(c)
			if strings.Contains(name, s) || (!defaultRuleset.sensitiveKey(name) && visible(d, c, s)) {
				return true
			}
		}
	}
	return false
}

// FuzzRulePath checks that any rule path either fails validation with a
// RuleError or compiles and can be used.
func FuzzRulePath(f *testing.F) {
	for _, s := range []string{"$", "$.a", "$..b[*]", `$["x"]['y'][3]`, "$.*", "$..*", "$.a[", `$["\u00e9"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rs, err := Compile(Rules{IgnorePaths: []string{p}, UnorderedArrays: []string{p}, ArrayKeys: map[string]string{p: "id"}})
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) || !errors.Is(err, ErrInvalidRules) {
				t.Fatalf("error %v is not a RuleError", err)
			}
			return
		}
		c := Comparer{Rules: rs}
		pr, sr := jsonResp([]byte(`{"a":[{"id":1,"b":2}],"x":{"y":[3]}}`)), jsonResp([]byte(`{"a":[{"id":2,"b":2}],"x":{"y":[4,5]}}`))
		checkInvariants(t, c, pr, sr, c.Pair(pr, sr))
	})
}

// FuzzParse checks the parser accepts exactly what encoding/json accepts.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s[0]))
		f.Add([]byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		err := d.parse(data)
		if valid := json.Valid(data); (err == nil) != valid {
			t.Fatalf("parse(%q) = %v, json.Valid = %v", data, err, valid)
		}
	})
}
