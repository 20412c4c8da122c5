package compare

import (
	"bytes"
	"encoding/json"
	"math/big"
	"net/http"
	"slices"
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

func FuzzPair(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add(200, 200, "application/json", "application/json", []byte(s[0]), []byte(s[1]), false, i%3 == 0, uint8(i), uint8(i*7))
	}
	f.Add(200, 503, "text/html", "text/plain", []byte("<p>"), []byte("<p>"), true, true, uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, ps, ss int, pct, sct string, pb, sb []byte, ptrunc, strunc bool, maxDiffs, maxDepth uint8) {
		p := &envelope.Response{Status: ps, Headers: http.Header{"Content-Type": {pct}}, Body: pb, BodySize: int64(len(pb)), BodyTruncated: ptrunc}
		s := &envelope.Response{Status: ss, Headers: http.Header{"Content-Type": {sct}}, Body: sb, BodySize: int64(len(sb)) + 1, BodyTruncated: strunc}
		c := Comparer{MaxDiffs: int(maxDiffs % 8), MaxDepth: int(maxDepth % 80)}
		r := c.Pair(p, s)
		checkInvariants(t, c, p, s, r)

		if self := c.Pair(p, p); !self.Match {
			t.Fatalf("a response does not match itself: %+v", self)
		}
		if MediaType(pct) == MediaType(sct) {
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
