package compare

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

func resp(status int, contentType, body string) *envelope.Response {
	r := &envelope.Response{Status: status, Headers: http.Header{}, Body: []byte(body), BodySize: int64(len(body))}
	if contentType != "" {
		r.Headers.Set("Content-Type", contentType)
	}
	return r
}

func truncated(r *envelope.Response, keep int) *envelope.Response {
	r.Body = r.Body[:keep]
	r.BodyTruncated = true
	return r
}

const js = "application/json"

func d(path, kind string) Diff { return Diff{Path: path, Generalized: Generalize(path), Kind: kind} }

func TestPair(t *testing.T) {
	long := `{"items":[` + strings.Repeat(`{"id":1},`, 9) + `{"id":1}]}`
	tests := []struct {
		name          string
		cmp           Comparer
		primary       *envelope.Response
		shadow        *envelope.Response
		want          []Diff
		status, ctype bool // StatusMatch, ContentTypeMatch
		truncated     bool
		note          string // substring of Note; "" means Note must be empty
	}{
		{name: "identical json", primary: resp(200, js, `{"a":1}`), shadow: resp(200, js, `{"a":1}`)},
		{name: "status", primary: resp(200, js, `{}`), shadow: resp(500, js, `{}`),
			want: []Diff{d("status", KindStatus)}, ctype: true},
		{name: "content type", primary: resp(200, js, `{}`), shadow: resp(200, "text/html", `{}`),
			want: []Diff{d("header.Content-Type", KindHeader)}, status: true},
		{name: "content type parameters and case ignored", primary: resp(200, "application/json; charset=utf-8", `{}`),
			shadow: resp(200, "Application/JSON;charset=UTF-8", `{}`)},
		{name: "charset only on one side", primary: resp(200, "text/plain", "x"), shadow: resp(200, "text/plain; charset=iso-8859-1", "x")},
		{name: "no content type on both", primary: resp(204, "", ""), shadow: resp(204, "", "")},
		{name: "content type missing on one side", primary: resp(200, "", ""), shadow: resp(200, "text/plain", ""),
			want: []Diff{d("header.Content-Type", KindHeader)}, status: true},
		{name: "status and content type and body", primary: resp(200, js, `{"a":1}`), shadow: resp(502, "text/html", "<h1>bad gateway</h1>"),
			want: []Diff{d("status", KindStatus), d("header.Content-Type", KindHeader), d("$", KindBodyText)},
			note: "shadow body is not valid JSON"},
		{name: "value changed", primary: resp(200, js, `{"user":{"id":7,"email":"a@x.io"}}`), shadow: resp(200, js, `{"user":{"id":7,"email":"b@x.io"}}`),
			want: []Diff{d("$.user.email", KindValueChanged)}, status: true, ctype: true},
		{name: "missing and extra fields", primary: resp(200, js, `{"a":1,"b":2}`), shadow: resp(200, js, `{"a":1,"c":2}`),
			want: []Diff{d("$.b", KindMissingField), d("$.c", KindExtraField)}, status: true, ctype: true},
		{name: "type changed", primary: resp(200, js, `{"a":1,"b":null,"c":[],"d":"x","e":true}`),
			shadow: resp(200, js, `{"a":"1","b":{},"c":{},"d":1,"e":"true"}`),
			want:   []Diff{d("$.a", KindTypeChanged), d("$.b", KindTypeChanged), d("$.c", KindTypeChanged), d("$.d", KindTypeChanged), d("$.e", KindTypeChanged)},
			status: true, ctype: true},
		{name: "booleans are one type", primary: resp(200, js, `[true]`), shadow: resp(200, js, `[false]`),
			want: []Diff{d("$[0]", KindValueChanged)}, status: true, ctype: true},
		{name: "top-level scalar", primary: resp(200, js, `1`), shadow: resp(200, js, `2`),
			want: []Diff{d("$", KindValueChanged)}, status: true, ctype: true},
		{name: "array shorter in shadow", primary: resp(200, js, `{"a":[1,2,3]}`), shadow: resp(200, js, `{"a":[1,5]}`),
			want: []Diff{d("$.a", KindArrayLength), d("$.a[1]", KindValueChanged), d("$.a[2]", KindMissingField)}, status: true, ctype: true},
		{name: "array longer in shadow", primary: resp(200, js, `[[1]]`), shadow: resp(200, js, `[[1,2,3]]`),
			want: []Diff{d("$[0]", KindArrayLength), d("$[0][1]", KindExtraField), d("$[0][2]", KindExtraField)}, status: true, ctype: true},
		{name: "member order and whitespace ignored", primary: resp(200, js, `{"a":1,"b":[1,2],"c":{"x":null}}`),
			shadow: resp(200, js, " {\n \"c\" : {\"x\":null},\t\"b\":[ 1 , 2 ],\r\n\"a\":1 } ")},
		{name: "numbers by value", primary: resp(200, js, `[1,100,0.1,0,-0,1.5e3,12345678901234567890,1e-2]`),
			shadow: resp(200, js, `[1.0,1e2,0.10,0.0,0,1500,12345678901234567890.0,0.01]`)},
		{name: "big integers differ exactly", primary: resp(200, js, `{"id":12345678901234567890}`), shadow: resp(200, js, `{"id":12345678901234567891}`),
			want: []Diff{d("$.id", KindValueChanged)}, status: true, ctype: true},
		{name: "float differs", primary: resp(200, js, `{"p":0.1}`), shadow: resp(200, js, `{"p":0.10000000000000001}`),
			want: []Diff{d("$.p", KindValueChanged)}, status: true, ctype: true},
		{name: "strings by value", primary: resp(200, js, `{"\u0061":"\u00e9\n","b":"\/"}`), shadow: resp(200, js, `{"b":"/","a":"é\n"}`)},
		{name: "string escapes that differ", primary: resp(200, js, `["\u0041"]`), shadow: resp(200, js, `["\u0042"]`),
			want: []Diff{d("$[0]", KindValueChanged)}, status: true, ctype: true},
		{name: "path syntax", primary: resp(200, js, `{"items":[{},{},{},{"price":1}],"a b":1,"x-id":1,"1":1,"é":1,"q\"\\":1,"_ok9":1}`),
			shadow: resp(200, js, `{"items":[{},{},{},{"price":2}],"a b":2,"x-id":2,"1":2,"é":2,"q\"\\":2,"_ok9":2}`),
			want: []Diff{d("$.items[3].price", KindValueChanged), d(`$["a b"]`, KindValueChanged), d(`$["x-id"]`, KindValueChanged),
				d(`$["1"]`, KindValueChanged), d(`$["é"]`, KindValueChanged), d(`$["q\"\\"]`, KindValueChanged), d("$._ok9", KindValueChanged)},
			status: true, ctype: true},
		{name: "control character in a name", primary: resp(200, js, `{"a\nb":1}`), shadow: resp(200, js, `{}`),
			want: []Diff{d(`$["a\nb"]`, KindMissingField)}, status: true, ctype: true},
		{name: "extra field path from the shadow's name", primary: resp(200, js, `{}`), shadow: resp(200, js, `{"new field":{"x":1}}`),
			want: []Diff{d(`$["new field"]`, KindExtraField)}, status: true, ctype: true},
		{name: "plus json", primary: resp(200, "application/problem+json", `{"title":"a"}`), shadow: resp(200, "application/problem+json", `{"title":"b"}`),
			want: []Diff{d("$.title", KindValueChanged)}, status: true, ctype: true},
		{name: "json only decided by the primary", primary: resp(200, "text/plain", `{"a":1}`), shadow: resp(200, "text/plain", `{"a": 1}`),
			want: []Diff{d("$", KindBodyText)}, status: true, ctype: true},
		{name: "invalid json falls back to bytes", primary: resp(200, js, `{"a":1`), shadow: resp(200, js, `{"a":2`),
			want: []Diff{d("$", KindBodyText)}, status: true, ctype: true, note: "primary body is not valid JSON"},
		{name: "invalid json equal bytes", primary: resp(200, js, `{oops`), shadow: resp(200, js, `{oops`)},
		{name: "html", primary: resp(200, "text/html; charset=utf-8", "<p>a</p>"), shadow: resp(200, "text/html; charset=utf-8", "<p>b</p>"),
			want: []Diff{d("$", KindBodyText)}, status: true, ctype: true},
		{name: "binary", primary: resp(200, "image/png", "\x89PNG1"), shadow: resp(200, "image/png", "\x89PNG2"),
			want: []Diff{d("$", KindBodyBinary)}, status: true, ctype: true},
		{name: "no content type is binary", primary: resp(200, "", "a"), shadow: resp(200, "", "b"),
			want: []Diff{d("$", KindBodyBinary)}, status: true, ctype: true},
		{name: "empty bodies match", primary: resp(200, js, ""), shadow: resp(200, js, "")},
		{name: "empty against json", primary: resp(200, js, ""), shadow: resp(200, js, "{}"),
			want: []Diff{d("$", KindBodyText)}, status: true, ctype: true, note: "primary body is not valid JSON"},
		{name: "both truncated, same prefix and size", primary: truncated(resp(200, "text/plain", "abcdef"), 3),
			shadow: truncated(resp(200, "text/plain", "abcxyz"), 3), truncated: true, note: "primary body truncated: compared the first 3 of 6 bytes"},
		{name: "both truncated, sizes differ", primary: truncated(resp(200, "text/plain", "abcdef"), 3),
			shadow: truncated(resp(200, "text/plain", "abcdefg"), 3),
			want:   []Diff{d("$", KindBodyText)}, status: true, ctype: true, truncated: true, note: "shadow body truncated: compared the first 3 of 7 bytes"},
		{name: "truncated size unknown", primary: truncated(resp(200, "text/plain", "abcdef"), 3),
			shadow: func() *envelope.Response {
				r := truncated(resp(200, "text/plain", "abcdefg"), 3)
				r.BodySize = -1
				return r
			}(),
			truncated: true, note: "shadow body truncated: compared the first 3 bytes"},
		{name: "truncated json compared as bytes", primary: truncated(resp(200, js, `{"a":1,"b":2}`), 7),
			shadow: resp(200, js, `{"a":1}`), want: []Diff{d("$", KindBodyText)}, status: true, ctype: true, truncated: true,
			note: "JSON body truncated: compared as bytes"},
		{name: "truncated json that would parse", primary: truncated(resp(200, js, `12345`), 2), shadow: resp(200, js, `12`),
			want: []Diff{d("$", KindBodyText)}, status: true, ctype: true, truncated: true, note: "JSON body truncated"},
		{name: "max diffs", cmp: Comparer{MaxDiffs: 3}, primary: resp(200, js, `[1,2,3,4,5]`), shadow: resp(200, js, `[0,0,0,0,0]`),
			want:   []Diff{d("$[0]", KindValueChanged), d("$[1]", KindValueChanged), d("$[2]", KindValueChanged)},
			status: true, ctype: true, truncated: true, note: "more than 3 differences"},
		{name: "max diffs reached by the status", cmp: Comparer{MaxDiffs: 1}, primary: resp(200, js, `[1]`), shadow: resp(201, js, `[2]`),
			want: []Diff{d("status", KindStatus)}, ctype: true, truncated: true, note: "more than 1 differences"},
		{name: "max depth", cmp: Comparer{MaxDepth: 2}, primary: resp(200, js, `{"a":{"b":{"c":1}},"x":1}`), shadow: resp(200, js, `{"a":{"b":{"c":2}},"x":2}`),
			want: []Diff{d("$.a.b", KindValueChanged), d("$.x", KindValueChanged)}, status: true, ctype: true, truncated: true,
			note: "JSON nested deeper than 2 levels (first at $.a.b)"},
		{name: "max depth: equal text below is equal", cmp: Comparer{MaxDepth: 1}, primary: resp(200, js, `{"a":{"b":1},"x":1}`),
			shadow: resp(200, js, `{"x":1,"a":{"b":1}}`)},
		{name: "max depth: text below is compared as text", cmp: Comparer{MaxDepth: 1}, primary: resp(200, js, `{"a":{"b":1}}`),
			shadow: resp(200, js, `{"a":{"b": 1}}`), want: []Diff{d("$.a", KindValueChanged)}, status: true, ctype: true, truncated: true,
			note: "JSON nested deeper than 1 levels"},
		{name: "duplicate names in the same order pair by position", primary: resp(200, js, `{"a":1,"a":2}`), shadow: resp(200, js, `{"a":1,"a":3}`),
			want: []Diff{d("$.a", KindValueChanged)}, status: true, ctype: true},
		{name: "duplicate names otherwise: the last counts", primary: resp(200, js, `{"a":1,"a":2,"b":1}`), shadow: resp(200, js, `{"b":1,"a":2}`)},
		{name: "many items", primary: resp(200, js, long), shadow: resp(200, js, strings.Replace(long, `{"id":1}]`, `{"id":2}]`, 1)),
			want: []Diff{d("$.items[9].id", KindValueChanged)}, status: true, ctype: true},
		{name: "nil shadow", primary: resp(0, "", ""), shadow: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cmp.Pair(tt.primary, tt.shadow)
			if !reflect.DeepEqual(got.Diffs, tt.want) {
				t.Errorf("Diffs = %v\nwant    %v", got.Diffs, tt.want)
			}
			wantStatus, wantCT := tt.status, tt.ctype
			if len(tt.want) == 0 {
				wantStatus, wantCT = true, true
			}
			if got.StatusMatch != wantStatus || got.ContentTypeMatch != wantCT {
				t.Errorf("StatusMatch, ContentTypeMatch = %v, %v, want %v, %v", got.StatusMatch, got.ContentTypeMatch, wantStatus, wantCT)
			}
			if got.Match != (len(tt.want) == 0) {
				t.Errorf("Match = %v with diffs %v", got.Match, got.Diffs)
			}
			if got.Match != (got.StatusMatch && got.ContentTypeMatch && got.BodyMatch) {
				t.Errorf("Match = %v but StatusMatch, ContentTypeMatch, BodyMatch = %v, %v, %v", got.Match, got.StatusMatch, got.ContentTypeMatch, got.BodyMatch)
			}
			if got.Truncated != tt.truncated {
				t.Errorf("Truncated = %v, want %v (note %q)", got.Truncated, tt.truncated, got.Note)
			}
			if tt.note == "" && got.Note != "" || !strings.Contains(got.Note, tt.note) {
				t.Errorf("Note = %q, want it to contain %q", got.Note, tt.note)
			}
		})
	}
}

func TestPairBodyMatch(t *testing.T) {
	got := Pair(resp(200, js, `{"a":1}`), resp(500, js, `{"a":1}`))
	if !got.BodyMatch || got.StatusMatch || got.Match {
		t.Fatalf("status-only mismatch: %+v", got)
	}
	got = Comparer{MaxDiffs: 1}.Pair(resp(200, js, `[1]`), resp(201, js, `[2]`))
	if got.BodyMatch {
		t.Fatalf("a body diff past MaxDiffs must still clear BodyMatch: %+v", got)
	}
}

// TestDeepNesting checks the depth bound on documents far deeper than it:
// no stack growth in the parser, one diff at the cut, and equal deep
// documents still match.
func TestDeepNesting(t *testing.T) {
	const depth = 100000
	deep := func(leaf string) string {
		return strings.Repeat(`{"a":[`, depth) + leaf + strings.Repeat(`]}`, depth)
	}
	got := Pair(resp(200, js, deep("1")), resp(200, js, deep("2")))
	want := "$" + strings.Repeat(".a[0]", DefaultMaxDepth/2)
	if len(got.Diffs) != 1 || got.Diffs[0] != d(want, KindValueChanged) {
		t.Fatalf("Diffs = %v, want one value_changed at %s", got.Diffs, want)
	}
	if !got.Truncated || !strings.Contains(got.Note, "nested deeper than 64 levels") {
		t.Fatalf("Truncated = %v, Note = %q", got.Truncated, got.Note)
	}
	if got := Pair(resp(200, js, deep("1")), resp(200, js, deep("1.0"))); got.Match {
		t.Fatalf("below the depth bound numbers compare as text: %+v", got)
	}
	eq := Pair(resp(200, js, deep("1")), resp(200, js, " "+deep("1")))
	if !eq.Match || eq.Truncated {
		t.Fatalf("equal deep documents: %+v", eq)
	}
}

func TestMaxDiffsDefault(t *testing.T) {
	var a, b strings.Builder
	a.WriteString("[")
	b.WriteString("[")
	for i := range 1000 {
		if i > 0 {
			a.WriteString(",")
			b.WriteString(",")
		}
		a.WriteString("1")
		b.WriteString("2")
	}
	a.WriteString("]")
	b.WriteString("]")
	got := Pair(resp(200, js, a.String()), resp(200, js, b.String()))
	if len(got.Diffs) != DefaultMaxDiffs || !got.Truncated || got.Match || got.Diffs[99].Path != "$[99]" {
		t.Fatalf("got %d diffs, Truncated %v, last %v", len(got.Diffs), got.Truncated, got.Diffs[len(got.Diffs)-1])
	}
}

func TestMediaType(t *testing.T) {
	tests := map[string]string{
		"":                                "",
		"application/json":                "application/json",
		"Application/JSON; charset=UTF-8": "application/json",
		" text/html ;charset=utf-8":       "text/html",
		"text/plain; broken=\"":           "text/plain",
		"multipart/form-data; boundary=x": "multipart/form-data",
	}
	for in, want := range tests {
		if got := MediaType(in); got != want {
			t.Errorf("MediaType(%q) = %q, want %q", in, got, want)
		}
	}
}
