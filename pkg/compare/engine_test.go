package compare

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

const form = "application/x-www-form-urlencoded"

func hdr(r *envelope.Response, kv ...string) *envelope.Response {
	for i := 0; i < len(kv); i += 2 {
		r.Headers.Add(kv[i], kv[i+1])
	}
	return r
}

func encoded(r *envelope.Response, coding string) *envelope.Response {
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		w, _ = flate.NewWriter(&buf, flate.BestSpeed)
		coding = "deflate"
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		r.Body = zstdEnc.EncodeAll(r.Body, nil)
		r.BodySize = int64(len(r.Body))
		r.Headers.Set("Content-Encoding", coding)
		return r
	}
	w.Write(r.Body)
	w.Close()
	r.Body = buf.Bytes()
	r.BodySize = int64(len(r.Body))
	r.Headers.Set("Content-Encoding", coding)
	return r
}

// zstdEnc is shared: a zstd encoder is expensive to make.
var zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))

func compiled(t testing.TB, r Rules) *Ruleset {
	t.Helper()
	rs, err := Compile(r)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return rs
}

// TestEngine is the table of the engine's behaviour: every kind, rule and
// content type, each case with the exact diffs it must find.
func TestEngine(t *testing.T) {
	bomb := strings.Repeat("a", 1<<20)
	tests := []struct {
		name      string
		rules     Rules
		cmp       Comparer
		p, s      *envelope.Response
		want      []Diff
		format    string
		summary   string // exact Summary
		note      string // substring of Note; "" means empty
		truncated bool
	}{
		// Status.
		{name: "status differs", p: resp(200, js, `{}`), s: resp(500, js, `{}`), want: []Diff{d("status", KindStatus)}, format: FormatJSON},
		{name: "status class only: 200 vs 204", rules: Rules{StatusClassOnly: true}, p: resp(200, js, ``), s: resp(204, js, ``), format: FormatEmpty},
		{name: "status class only: 200 vs 500", rules: Rules{StatusClassOnly: true}, p: resp(200, js, ``), s: resp(500, js, ``),
			want: []Diff{d("status", KindStatus)}, format: FormatEmpty},
		{name: "status class only: 0 is no class", rules: Rules{StatusClassOnly: true}, p: resp(0, js, ``), s: resp(42, js, ``),
			want: []Diff{d("status", KindStatus)}, format: FormatEmpty},

		// Headers.
		{name: "cache-control differs", p: hdr(resp(200, js, `{}`), "Cache-Control", "no-store"), s: hdr(resp(200, js, `{}`), "Cache-Control", "max-age=60"),
			want: []Diff{d("header.Cache-Control", KindHeader)}, format: FormatJSON},
		{name: "cache-control directives in another order and case", p: hdr(resp(200, js, `{}`), "Cache-Control", "no-cache, Max-Age=0"),
			s: hdr(resp(200, js, `{}`), "Cache-Control", "max-age=0", "Cache-Control", "NO-CACHE"), format: FormatJSON},
		{name: "location missing, vary set differs, headers by name", p: hdr(resp(302, js, `{}`), "Location", "/a", "Vary", "Origin"),
			s:    hdr(resp(302, js, `{}`), "vary", "Accept-Encoding, Origin"),
			want: []Diff{d("header.Location", KindHeader), d("header.Vary", KindHeader)}, format: FormatJSON},
		{name: "volatile headers ignored", p: hdr(resp(200, js, `{}`), "Date", "Mon", "X-Request-Id", "1", "Server", "a", "Set-Cookie", "s=1",
			"Content-Length", "2", "Traceparent", "00-1", "X-B3-Traceid", "1", "Age", "1"),
			s: hdr(resp(200, js, `{}`), "Date", "Tue", "X-Request-Id", "2", "Server", "b", "Set-Cookie", "s=2", "Content-Length", "3",
				"Traceparent", "00-2", "X-B3-Traceid", "2", "Expires", "x"), format: FormatJSON},
		{name: "unlisted header not compared", p: hdr(resp(200, js, `{}`), "X-Foo", "1"), s: hdr(resp(200, js, `{}`), "X-Foo", "2"), format: FormatJSON},
		{name: "etag by presence", p: hdr(resp(200, js, `{}`), "ETag", `"a"`), s: hdr(resp(200, js, `{}`), "Etag", `"b"`), format: FormatJSON},
		{name: "etag missing", p: hdr(resp(200, js, `{}`), "ETag", `"a"`), s: resp(200, js, `{}`), want: []Diff{d("header.Etag", KindHeader)}, format: FormatJSON},
		{name: "compare_headers adds a header", rules: Rules{CompareHeaders: []string{"x-foo"}},
			p: hdr(resp(200, js, `{}`), "X-Foo", "1"), s: hdr(resp(200, js, `{}`), "X-Foo", "2"), want: []Diff{d("header.X-Foo", KindHeader)}, format: FormatJSON},
		{name: "compare_headers * skips volatile ones", rules: Rules{CompareHeaders: []string{"*"}},
			p:    hdr(resp(200, js, `{}`), "X-Foo", "1", "Date", "a", "X-Envoy-Upstream-Service-Time", "3"),
			s:    hdr(resp(200, js, `{}`), "X-Foo", "2", "Date", "b", "X-Envoy-Upstream-Service-Time", "4"),
			want: []Diff{d("header.X-Foo", KindHeader)}, format: FormatJSON},
		{name: "compare_headers names a volatile header", rules: Rules{CompareHeaders: []string{"Date"}},
			p: hdr(resp(200, js, `{}`), "Date", "a"), s: hdr(resp(200, js, `{}`), "Date", "b"), want: []Diff{d("header.Date", KindHeader)}, format: FormatJSON},
		{name: "ignore_headers wins over defaults and compare_headers", rules: Rules{IgnoreHeaders: []string{"Cache-Control", "X-Foo"}, CompareHeaders: []string{"X-Foo"}},
			p: hdr(resp(200, js, `{}`), "Cache-Control", "a", "X-Foo", "1"), s: hdr(resp(200, js, `{}`), "Cache-Control", "b", "X-Foo", "2"), format: FormatJSON},
		{name: "ignore_headers prefix", rules: Rules{IgnoreHeaders: []string{"X-Internal-*"}, CompareHeaders: []string{"*"}},
			p: hdr(resp(200, js, `{}`), "X-Internal-Node", "1", "X-Other", "1"), s: hdr(resp(200, js, `{}`), "X-Internal-Node", "2", "X-Other", "2"),
			want: []Diff{d("header.X-Other", KindHeader)}, format: FormatJSON},
		{name: "ignore_headers Content-Type", rules: Rules{IgnoreHeaders: []string{"content-type"}},
			p: resp(200, js, `{"a":1}`), s: resp(200, "text/json", `{"a":1}`), format: FormatJSON},

		// JSON kinds.
		{name: "json missing and extra", p: resp(200, js, `{"a":1,"b":{"c":1}}`), s: resp(200, js, `{"a":1,"b":{"d":1}}`),
			want: []Diff{d("$.b.c", KindMissingField), d("$.b.d", KindExtraField)}, format: FormatJSON},
		{name: "json type changed", p: resp(200, js, `{"a":[1]}`), s: resp(200, js, `{"a":{"0":1}}`), want: []Diff{d("$.a", KindTypeChanged)}, format: FormatJSON},
		{name: "json value changed in an array", p: resp(200, js, `{"items":[{"price":1},{"price":2}]}`), s: resp(200, js, `{"items":[{"price":1},{"price":3}]}`),
			want: []Diff{{Path: "$.items[1].price", Generalized: "$.items[*].price", Kind: KindValueChanged}}, format: FormatJSON},
		{name: "json array length", p: resp(200, js, `[1,2,3]`), s: resp(200, js, `[1,2]`),
			want: []Diff{d("$", KindArrayLength), d("$[2]", KindMissingField)}, format: FormatJSON},
		{name: "array reordered is one array_order", p: resp(200, js, `{"a":[1,2,3,4]}`), s: resp(200, js, `{"a":[4,3,2,1]}`),
			want: []Diff{d("$.a", KindArrayOrder)}, format: FormatJSON},
		{name: "objects reordered, member order and number form aside", p: resp(200, js, `[{"id":1,"x":"a"},{"id":2,"x":"b"}]`),
			s: resp(200, js, `[{"x":"b","id":2.0},{"x":"a","id":1}]`), want: []Diff{d("$", KindArrayOrder)}, format: FormatJSON},
		{name: "reordered with duplicates", p: resp(200, js, `[1,1,2]`), s: resp(200, js, `[1,2,1]`), want: []Diff{d("$", KindArrayOrder)}, format: FormatJSON},
		{name: "reordered and changed is positional", p: resp(200, js, `[1,2,3]`), s: resp(200, js, `[3,2,9]`),
			want: []Diff{d("$[0]", KindValueChanged), d("$[2]", KindValueChanged)}, format: FormatJSON},
		{name: "same elements in place, other text", p: resp(200, js, `[1, 2, {"a":1,"b":2}]`), s: resp(200, js, `[1.0,2e0,{"b":2,"a":1}]`), format: FormatJSON},
		{name: "nested reorder reported at the inner array", p: resp(200, js, `{"a":[{"t":[1,2]},{"t":[3]}]}`), s: resp(200, js, `{"a":[{"t":[2,1]},{"t":[3]}]}`),
			want: []Diff{{Path: "$.a[0].t", Generalized: "$.a[*].t", Kind: KindArrayOrder}}, format: FormatJSON},

		// Ignore paths.
		{name: "ignore an exact path", rules: Rules{IgnorePaths: []string{"$.meta.request_id"}},
			p: resp(200, js, `{"meta":{"request_id":"a","v":1}}`), s: resp(200, js, `{"meta":{"request_id":"b","v":2}}`),
			want: []Diff{d("$.meta.v", KindValueChanged)}, format: FormatJSON},
		{name: "ignore children with .*", rules: Rules{IgnorePaths: []string{"$.meta.*"}},
			p: resp(200, js, `{"meta":{"a":1,"b":[1]},"x":1}`), s: resp(200, js, `{"meta":{"a":2,"c":3},"x":1}`), format: FormatJSON},
		{name: ".* does not ignore the parent itself", rules: Rules{IgnorePaths: []string{"$.meta.*"}},
			p: resp(200, js, `{"meta":{"a":1}}`), s: resp(200, js, `{"meta":[1]}`), want: []Diff{d("$.meta", KindTypeChanged)}, format: FormatJSON},
		{name: "ignore a name at any depth", rules: Rules{IgnorePaths: []string{"$..updated_at"}},
			p:    resp(200, js, `{"updated_at":1,"a":{"updated_at":1,"list":[{"updated_at":1,"v":1}]}}`),
			s:    resp(200, js, `{"updated_at":2,"a":{"list":[{"updated_at":{"x":1},"v":2}]}}`),
			want: []Diff{{Path: "$.a.list[0].v", Generalized: "$.a.list[*].v", Kind: KindValueChanged}}, format: FormatJSON},
		{name: "ignore in every element", rules: Rules{IgnorePaths: []string{"$.items[*].price"}},
			p: resp(200, js, `{"items":[{"price":1,"n":"a"},{"price":2,"n":"b"}]}`), s: resp(200, js, `{"items":[{"price":5,"n":"a"},{"n":"c"}]}`),
			want: []Diff{{Path: "$.items[1].n", Generalized: "$.items[*].n", Kind: KindValueChanged}}, format: FormatJSON},
		{name: "ignore one index", rules: Rules{IgnorePaths: []string{"$.items[1]"}},
			p: resp(200, js, `{"items":[1,2,3]}`), s: resp(200, js, `{"items":[1,5,6]}`), want: []Diff{d("$.items[2]", KindValueChanged)}, format: FormatJSON},
		{name: "ignore a quoted name", rules: Rules{IgnorePaths: []string{`$["x-id"]`, `$['a b']`}},
			p: resp(200, js, `{"x-id":1,"a b":1,"c":1}`), s: resp(200, js, `{"x-id":2,"a b":2,"c":2}`), want: []Diff{d("$.c", KindValueChanged)}, format: FormatJSON},
		{name: "ignore the whole body", rules: Rules{IgnorePaths: []string{"$"}}, p: resp(200, "text/plain", "a"), s: resp(200, "text/plain", "b"), format: FormatText},
		{name: "ignore .. with a wildcard below", rules: Rules{IgnorePaths: []string{"$..links[*].href"}},
			p: resp(200, js, `{"a":{"links":[{"href":"x","rel":"self"}]}}`), s: resp(200, js, `{"a":{"links":[{"href":"y","rel":"next"}]}}`),
			want: []Diff{{Path: "$.a.links[0].rel", Generalized: "$.a.links[*].rel", Kind: KindValueChanged}}, format: FormatJSON},

		// Unordered arrays.
		{name: "unordered: permutation matches", rules: Rules{UnorderedArrays: []string{"$.tags"}},
			p: resp(200, js, `{"tags":["a","b","c"]}`), s: resp(200, js, `{"tags":["c","a","b"]}`), format: FormatJSON},
		{name: "unordered: elements that differ", rules: Rules{UnorderedArrays: []string{"$.tags"}},
			p: resp(200, js, `{"tags":["a","b","c"]}`), s: resp(200, js, `{"tags":["c","x","a","y"]}`),
			want: []Diff{{Path: "$.tags[1]", Generalized: "$.tags[*]", Kind: KindMissingField},
				{Path: "$.tags[1]", Generalized: "$.tags[*]", Kind: KindExtraField}, {Path: "$.tags[3]", Generalized: "$.tags[*]", Kind: KindExtraField}},
			format: FormatJSON},
		{name: "unordered: multiset counts", rules: Rules{UnorderedArrays: []string{"$"}}, p: resp(200, js, `[1,1,2]`), s: resp(200, js, `[1,2,2]`),
			want: []Diff{d("$[1]", KindMissingField), d("$[2]", KindExtraField)}, format: FormatJSON},
		{name: "unordered everywhere", rules: Rules{UnorderedArrays: []string{"$..*"}},
			p: resp(200, js, `[[1,2],{"a":[{"b":[3,4]},{"b":[5]}]}]`), s: resp(200, js, `[{"a":[{"b":[5]},{"b":[4,3]}]},[2,1]]`), format: FormatJSON},
		{name: "unordered only where named", rules: Rules{UnorderedArrays: []string{"$.a"}},
			p: resp(200, js, `{"a":[[1,2],[3]]}`), s: resp(200, js, `{"a":[[3],[2,1]]}`),
			want:   []Diff{{Path: "$.a[0]", Generalized: "$.a[*]", Kind: KindMissingField}, {Path: "$.a[1]", Generalized: "$.a[*]", Kind: KindExtraField}},
			format: FormatJSON},
		{name: "unordered with ignored members inside", rules: Rules{UnorderedArrays: []string{"$.items"}, IgnorePaths: []string{"$.items[*].ts"}},
			p: resp(200, js, `{"items":[{"id":1,"ts":1},{"id":2,"ts":2}]}`), s: resp(200, js, `{"items":[{"ts":9,"id":2},{"id":1,"ts":8}]}`), format: FormatJSON},

		// Arrays matched by key.
		{name: "keyed: insertion is one extra element", rules: Rules{ArrayKeys: map[string]string{"$.items": "id"}},
			p:    resp(200, js, `{"items":[{"id":1,"v":"a"},{"id":2,"v":"b"},{"id":3,"v":"c"}]}`),
			s:    resp(200, js, `{"items":[{"id":1,"v":"a"},{"id":9,"v":"new"},{"id":2,"v":"b"},{"id":3,"v":"c"}]}`),
			want: []Diff{{Path: "$.items[1]", Generalized: "$.items[*]", Kind: KindExtraField}}, format: FormatJSON},
		{name: "positional insertion cascades (what keys avoid)",
			p: resp(200, js, `{"items":[{"id":1},{"id":2}]}`), s: resp(200, js, `{"items":[{"id":9},{"id":1},{"id":2}]}`),
			want: []Diff{d("$.items", KindArrayLength), {Path: "$.items[0].id", Generalized: "$.items[*].id", Kind: KindValueChanged},
				{Path: "$.items[1].id", Generalized: "$.items[*].id", Kind: KindValueChanged}, {Path: "$.items[2]", Generalized: "$.items[*]", Kind: KindExtraField}},
			format: FormatJSON},
		{name: "keyed: deletion and change use the primary index", rules: Rules{ArrayKeys: map[string]string{"$.items": "id"}},
			p: resp(200, js, `{"items":[{"id":"a","v":1},{"id":"b","v":2},{"id":"c","v":3}]}`),
			s: resp(200, js, `{"items":[{"id":"a","v":1},{"id":"c","v":4}]}`),
			want: []Diff{{Path: "$.items[1]", Generalized: "$.items[*]", Kind: KindMissingField},
				{Path: "$.items[2].v", Generalized: "$.items[*].v", Kind: KindValueChanged}}, format: FormatJSON},
		{name: "keyed: reorder is array_order", rules: Rules{ArrayKeys: map[string]string{"$.items": "id"}},
			p: resp(200, js, `{"items":[{"id":1,"v":1},{"id":2}]}`), s: resp(200, js, `{"items":[{"id":2},{"id":1,"v":5}]}`),
			want: []Diff{d("$.items", KindArrayOrder), {Path: "$.items[0].v", Generalized: "$.items[*].v", Kind: KindValueChanged}}, format: FormatJSON},
		{name: "keyed and unordered: order ignored", rules: Rules{ArrayKeys: map[string]string{"$.items": "id"}, UnorderedArrays: []string{"$.items"}},
			p: resp(200, js, `{"items":[{"id":1},{"id":2}]}`), s: resp(200, js, `{"items":[{"id":2},{"id":1}]}`), format: FormatJSON},
		{name: "keyed: keys by value, elements without a key by position", rules: Rules{ArrayKeys: map[string]string{"$..rows": "k"}},
			p: resp(200, js, `{"x":{"rows":[{"k":1,"v":1},"loose",{"v":"nokey"},{"k":{"obj":1}}]}}`),
			s: resp(200, js, `{"x":{"rows":["loose",{"v":"nokey2"},{"k":1.0,"v":1}]}}`),
			want: []Diff{{Path: "$.x.rows[2].v", Generalized: "$.x.rows[*].v", Kind: KindValueChanged},
				{Path: "$.x.rows[3]", Generalized: "$.x.rows[*]", Kind: KindMissingField}}, format: FormatJSON},
		{name: "keyed: duplicate keys, the later one by position", rules: Rules{ArrayKeys: map[string]string{"$": "id"}},
			p: resp(200, js, `[{"id":1,"v":1},{"id":1,"v":2}]`), s: resp(200, js, `[{"id":1,"v":1},{"id":1,"v":3}]`),
			want: []Diff{{Path: "$[1].v", Generalized: "$[*].v", Kind: KindValueChanged}}, format: FormatJSON},

		// Numeric tolerance.
		{name: "tolerance: absolute", rules: Rules{NumericTolerance: &Tolerance{Absolute: 0.01}},
			p: resp(200, js, `{"p":1.000,"q":100}`), s: resp(200, js, `{"p":1.009,"q":100.02}`), want: []Diff{d("$.q", KindValueChanged)}, format: FormatJSON},
		{name: "tolerance: relative", rules: Rules{NumericTolerance: &Tolerance{Relative: 0.001}},
			p: resp(200, js, `{"p":1000,"q":1}`), s: resp(200, js, `{"p":1000.9,"q":1.01}`), want: []Diff{d("$.q", KindValueChanged)}, format: FormatJSON},
		{name: "tolerance: not for strings or huge numbers", rules: Rules{NumericTolerance: &Tolerance{Absolute: 1, Relative: 1}},
			p: resp(200, js, `{"s":"1","big":1e400}`), s: resp(200, js, `{"s":"1.5","big":1e401}`),
			want: []Diff{d("$.s", KindValueChanged), d("$.big", KindValueChanged)}, format: FormatJSON},
		{name: "tolerance inside unordered arrays", rules: Rules{NumericTolerance: &Tolerance{Absolute: 0.1}, UnorderedArrays: []string{"$"}},
			p: resp(200, js, `[1.0,2.0,3.0]`), s: resp(200, js, `[3.05,1.01,2.0]`), format: FormatJSON},

		// Text and binary.
		{name: "html: first differing line", p: resp(200, "text/html", "<html>\n<p>a</p>\n<p>b</p>\n"), s: resp(200, "text/html; charset=utf-8", "<html>\n<p>a</p>\n<p>c</p>\n"),
			want: []Diff{d("$", KindBodyText)}, format: FormatText, summary: `line 3: -"<p>b</p>" / +"<p>c</p>"`},
		{name: "text: shadow has more lines", p: resp(200, "text/plain", "a\n"), s: resp(200, "text/plain", "a\nb"),
			want: []Diff{d("$", KindBodyText)}, format: FormatText, summary: `line 2: -(end) / +"b"`},
		{name: "text: long line shows where", p: resp(200, "text/plain", strings.Repeat("x", 100)+"A"+strings.Repeat("y", 100)),
			s: resp(200, "text/plain", strings.Repeat("x", 100)+"B"+strings.Repeat("y", 100)), want: []Diff{d("$", KindBodyText)}, format: FormatText,
			summary: `line 1 col 101: -…"xxxxxxxxxxxxxxxxAyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"… / +…"xxxxxxxxxxxxxxxxByyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"…`},
		{name: "text equal", p: resp(200, "text/csv", "a,b\n"), s: resp(200, "text/csv", "a,b\n"), format: FormatText},
		{name: "binary: lengths and hashes", p: resp(200, "application/octet-stream", "abc"), s: resp(200, "application/octet-stream", "abcd"),
			want: []Diff{d("$", KindBodyBinary)}, format: FormatBinary, summary: "primary 3 bytes sha256:ba7816bf8f01, shadow 4 bytes sha256:88d4266fd4e6"},
		{name: "binary equal", p: resp(200, "image/png", "\x89PNG"), s: resp(200, "image/png", "\x89PNG"), format: FormatBinary},
		{name: "json that does not parse is text", p: resp(200, js, `{"a":1}`), s: resp(200, js, `<html>oops</html>`),
			want: []Diff{d("$", KindBodyText)}, format: FormatText, summary: `line 1: -"{\"a\":1}" / +"<html>oops</html>"`, note: "shadow body is not valid JSON"},
		{name: "empty bodies", p: resp(204, "", ""), s: resp(204, "", ""), format: FormatEmpty},

		// Forms.
		{name: "form: changed, missing, extra; field order aside", p: resp(200, form, "a=1&b=x+y&c=%21"), s: resp(200, form, "d=4&b=x%20z&a=1"),
			want: []Diff{d("$.b", KindValueChanged), d("$.c", KindMissingField), d("$.d", KindExtraField)}, format: FormatForm},
		{name: "form: same fields other order", p: resp(200, form, "a=1&b=2"), s: resp(200, form, "b=2&a=1"), format: FormatForm},
		{name: "form: quoted names", p: resp(200, form, "a+b=1&x-y=1"), s: resp(200, form, "a+b=2&x-y=2"),
			want: []Diff{d(`$["a b"]`, KindValueChanged), d(`$["x-y"]`, KindValueChanged)}, format: FormatForm},
		{name: "form: repeated field is an array", p: resp(200, form, "t=a&t=b"), s: resp(200, form, "t=a&t=c&t=d"),
			want: []Diff{d("$.t", KindArrayLength), {Path: "$.t[1]", Generalized: "$.t[*]", Kind: KindValueChanged},
				{Path: "$.t[2]", Generalized: "$.t[*]", Kind: KindExtraField}}, format: FormatForm},
		{name: "form: repeated values reordered", p: resp(200, form, "t=a&t=b"), s: resp(200, form, "t=b&t=a"), want: []Diff{d("$.t", KindArrayOrder)}, format: FormatForm},
		{name: "form: unordered and ignored", rules: Rules{UnorderedArrays: []string{"$.t"}, IgnorePaths: []string{"$.csrf"}},
			p: resp(200, form, "t=a&t=b&csrf=1"), s: resp(200, form, "t=b&t=a&csrf=2"), format: FormatForm},
		{name: "form: unordered differences", rules: Rules{UnorderedArrays: []string{"$..*"}},
			p: resp(200, form, "t=a&t=b&t=b"), s: resp(200, form, "t=b&t=c"),
			want: []Diff{{Path: "$.t[0]", Generalized: "$.t[*]", Kind: KindMissingField}, {Path: "$.t[2]", Generalized: "$.t[*]", Kind: KindMissingField},
				{Path: "$.t[1]", Generalized: "$.t[*]", Kind: KindExtraField}}, format: FormatForm},
		{name: "form that does not parse is text", p: resp(200, form, "a=%zz"), s: resp(200, form, "a=1"),
			want: []Diff{d("$", KindBodyText)}, format: FormatText, summary: `line 1: -"a=%zz" / +"a=1"`, note: "primary body is not valid form-urlencoded"},

		// Content-Encoding.
		{name: "gzip against identity: equal bodies, header differs", p: encoded(resp(200, js, `{"a":1}`), "gzip"), s: resp(200, js, `{"a":1}`),
			want: []Diff{d("header.Content-Encoding", KindHeader)}, format: FormatJSON},
		{name: "gzip both sides, value changed", p: encoded(resp(200, js, `{"a":1}`), "gzip"), s: encoded(resp(200, js, `{"a":2}`), "gzip"),
			want: []Diff{d("$.a", KindValueChanged)}, format: FormatJSON},
		{name: "deflate: zlib and raw", p: encoded(resp(200, "text/plain", "hello"), "deflate"), s: encoded(resp(200, "text/plain", "hello"), "raw-deflate"), format: FormatText},
		{name: "br", p: encoded(resp(200, js, `[1,2]`), "br"), s: encoded(resp(200, js, `[2,1]`), "br"), want: []Diff{d("$", KindArrayOrder)}, format: FormatJSON},
		{name: "zstd", p: encoded(resp(200, form, `a=1`), "zstd"), s: encoded(resp(200, form, `a=2`), "zstd"), want: []Diff{d("$.a", KindValueChanged)}, format: FormatForm},
		{name: "corrupt gzip: raw bytes", p: encoded(resp(200, js, `{"a":1}`), "gzip"), s: hdr(resp(200, js, "\x1f\x8bnot gzip"), "Content-Encoding", "gzip"),
			want: []Diff{d("$", KindBodyBinary)}, format: FormatBinary, note: "shadow body could not be decoded (gzip: ",
			summary: "primary 31 bytes sha256:" + sha6(encoded(resp(200, js, `{"a":1}`), "gzip").Body) + ", shadow 10 bytes sha256:" + sha6([]byte("\x1f\x8bnot gzip"))},
		{name: "unknown coding: raw bytes", p: hdr(resp(200, "text/plain", "x"), "Content-Encoding", "compress"), s: hdr(resp(200, "text/plain", "x"), "Content-Encoding", "compress"),
			format: FormatBinary, note: `unknown content coding "compress"`},
		{name: "decompression bomb stops at MaxBodyBytes", cmp: Comparer{MaxBodyBytes: 1000}, p: encoded(resp(200, "text/plain", bomb), "gzip"),
			s: encoded(resp(200, "text/plain", bomb+"b"), "gzip"), format: FormatText, truncated: true,
			note: "primary body decodes (gzip) to more than 1000 bytes: compared the first 1000"},
		{name: "plain body over MaxBodyBytes", cmp: Comparer{MaxBodyBytes: 4}, p: resp(200, js, `{"a":1}`), s: resp(200, js, `{"a":2}`),
			format: FormatText, truncated: true, note: "primary body is larger than 4 bytes: compared the first 4; shadow body is larger than 4 bytes: compared the first 4; JSON body truncated: compared as bytes"},
		{name: "plain bodies over MaxBodyBytes, sizes differ", cmp: Comparer{MaxBodyBytes: 4}, p: resp(200, "text/plain", "abcdef"), s: resp(200, "text/plain", "abcdefg"),
			want: []Diff{d("$", KindBodyText)}, format: FormatText, summary: "equal in the first 4 bytes; whole sizes 6 and 7", truncated: true,
			note: "shadow body is larger than 4 bytes"},
		{name: "gzip truncated by the tap decodes as far as it goes", p: func() *envelope.Response {
			r := encoded(resp(200, "text/plain", strings.Repeat("line\n", 1000)), "gzip")
			r.BodySize = int64(len(r.Body))
			r.Body = r.Body[:len(r.Body)-8]
			r.BodyTruncated = true
			return r
		}(), s: resp(200, "text/plain", strings.Repeat("line\n", 1000)), want: []Diff{d("header.Content-Encoding", KindHeader)}, format: FormatText, truncated: true,
			note: "primary body truncated"},

		// Bounds.
		{name: "max diffs in an unordered array", cmp: Comparer{MaxDiffs: 2}, rules: Rules{UnorderedArrays: []string{"$"}},
			p: resp(200, js, `[1,2,3]`), s: resp(200, js, `[4,5,6]`), want: []Diff{d("$[0]", KindMissingField), d("$[1]", KindMissingField)},
			format: FormatJSON, truncated: true, note: "more than 2 differences"},
		{name: "max depth with rules", cmp: Comparer{MaxDepth: 2}, rules: Rules{IgnorePaths: []string{"$..x"}},
			p: resp(200, js, `{"a":{"b":{"c":1}},"x":1}`), s: resp(200, js, `{"a":{"b":{"c":2}},"x":2}`),
			want: []Diff{d("$.a.b", KindValueChanged)}, format: FormatJSON, truncated: true, note: "nested deeper than 2 levels (first at $.a.b)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cmp
			c.Rules = compiled(t, tt.rules)
			got := c.Pair(tt.p, tt.s)
			if !reflect.DeepEqual(got.Diffs, tt.want) {
				t.Errorf("Diffs = %v\nwant    %v", got.Diffs, tt.want)
			}
			if got.BodyFormat != tt.format {
				t.Errorf("BodyFormat = %q, want %q", got.BodyFormat, tt.format)
			}
			if got.Summary != tt.summary {
				t.Errorf("Summary = %q\nwant      %q", got.Summary, tt.summary)
			}
			if tt.note == "" && got.Note != "" || !strings.Contains(got.Note, tt.note) {
				t.Errorf("Note = %q, want it to contain %q", got.Note, tt.note)
			}
			if got.Truncated != tt.truncated {
				t.Errorf("Truncated = %v, want %v (note %q)", got.Truncated, tt.truncated, got.Note)
			}
			checkInvariants(t, c, tt.p, tt.s, got)
			for _, df := range got.Diffs {
				if df.Generalized != Generalize(df.Path) {
					t.Errorf("Generalized %q of %q, Generalize says %q", df.Generalized, df.Path, Generalize(df.Path))
				}
			}
		})
	}
	if len(tests) < 60 {
		t.Errorf("only %d cases", len(tests))
	}
}

func sha6(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:6])
}
