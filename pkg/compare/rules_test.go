package compare

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

func TestRulesValidate(t *testing.T) {
	many := make([]string, MaxRuleEntries+1)
	for i := range many {
		many[i] = "$.a"
	}
	tests := []struct {
		name  string
		rules Rules
		want  string // exact error message; "" for valid
	}{
		{name: "zero", rules: Rules{}},
		{name: "all valid", rules: Rules{
			IgnorePaths:      []string{"$", "$.a.b", "$.meta.*", "$..updated_at", "$.items[*].price", `$["a b"][0]`, "$['x-y']", "$..[*]", `$..["q"]`, "$.a[12].b"},
			IgnoreHeaders:    []string{"X-Internal-*", "date"},
			CompareHeaders:   []string{"*", "X-Version"},
			UnorderedArrays:  []string{"$..*", "$.tags"},
			ArrayKeys:        map[string]string{"$.items": "id", "$..rows": "key"},
			NumericTolerance: &Tolerance{Absolute: 0.5, Relative: 0.01},
			StatusClassOnly:  true,
			RedactHeaders:    []string{"X-Session", "X-Secret-*"},
			RedactKeys:       []string{"ssn", "card_number"},
		}},
		{name: "unterminated bracket", rules: Rules{IgnorePaths: []string{"$.a", "$.a["}},
			want: `compare.ignore_paths[1]: "$.a[" is not a valid path: unexpected end after "[" at offset 4`},
		{name: "no dollar", rules: Rules{IgnorePaths: []string{"a.b"}}, want: `compare.ignore_paths[0]: "a.b" is not a valid path: must start with "$"`},
		{name: "dash in a dotted name", rules: Rules{IgnorePaths: []string{"$.x-id"}},
			want: `compare.ignore_paths[0]: "$.x-id" is not a valid path: unexpected '-' at offset 3 (expected ".", ".." or "[")`},
		{name: "empty name", rules: Rules{IgnorePaths: []string{"$.a."}}, want: `compare.ignore_paths[0]: "$.a." is not a valid path: a name or * must follow '.' at offset 4`},
		{name: "digit first", rules: Rules{IgnorePaths: []string{"$.1a"}},
			want: `compare.ignore_paths[0]: "$.1a" is not a valid path: unexpected '1' at offset 2 (names other than [A-Za-z_][A-Za-z0-9_]* are written ["name"])`},
		{name: "bad bracket content", rules: Rules{UnorderedArrays: []string{"$[-1]"}},
			want: `compare.unordered_arrays[0]: "$[-1]" is not a valid path: unexpected '-' at offset 2 (expected *, an index or a quoted name after "[")`},
		{name: "unclosed quote", rules: Rules{UnorderedArrays: []string{`$["a]`}}, want: `compare.unordered_arrays[0]: "$[\"a]" is not a valid path: unterminated quoted name at offset 2`},
		{name: "missing ]", rules: Rules{IgnorePaths: []string{`$["a"`}}, want: `compare.ignore_paths[0]: "$[\"a\"" is not a valid path: expected "]" at offset 5`},
		{name: "bad escape", rules: Rules{IgnorePaths: []string{`$["\x"]`}}, want: `compare.ignore_paths[0]: "$[\"\\x\"]" is not a valid path: invalid quoted name at offset 2: invalid escape at offset 2`},
		{name: "huge index", rules: Rules{IgnorePaths: []string{"$[12345678901]"}}, want: `compare.ignore_paths[0]: "$[12345678901]" is not a valid path: index at offset 2 is too large`},
		{name: "too long", rules: Rules{IgnorePaths: []string{"$" + strings.Repeat(".a", 600)}},
			want: `compare.ignore_paths[0]: "$` + strings.Repeat(".a", 600) + `" is not a valid path: longer than 1024 bytes`},
		{name: "too many steps", rules: Rules{IgnorePaths: []string{"$" + strings.Repeat(".a", 65)}},
			want: `compare.ignore_paths[0]: "$` + strings.Repeat(".a", 65) + `" is not a valid path: more than 64 steps`},
		{name: "too many entries", rules: Rules{IgnorePaths: many}, want: `compare.ignore_paths: 257 entries are too many (at most 256)`},
		{name: "array key path", rules: Rules{ArrayKeys: map[string]string{"items": "id"}},
			want: `compare.array_keys["items"]: "items" is not a valid path: must start with "$"`},
		{name: "empty array key", rules: Rules{ArrayKeys: map[string]string{"$.items": ""}},
			want: `compare.array_keys["$.items"]: "" is not a valid key field: it must be a member name of 1 to 256 bytes`},
		{name: "negative tolerance", rules: Rules{NumericTolerance: &Tolerance{Absolute: -1}},
			want: `compare.numeric_tolerance.absolute: -1 is not valid: it must be a finite number >= 0`},
		{name: "relative above 1", rules: Rules{NumericTolerance: &Tolerance{Relative: 1.5}},
			want: `compare.numeric_tolerance.relative: 1.5 is not valid: it must be a number from 0 to 1`},
		{name: "NaN tolerance", rules: Rules{NumericTolerance: &Tolerance{Absolute: math.NaN()}},
			want: `compare.numeric_tolerance.absolute: NaN is not valid: it must be a finite number >= 0`},
		{name: "bad header name", rules: Rules{IgnoreHeaders: []string{"X Foo"}},
			want: `compare.ignore_headers[0]: "X Foo" is not a valid header name: ' ' at offset 1 is not allowed in a header name`},
		{name: "star alone outside compare_headers", rules: Rules{IgnoreHeaders: []string{"*"}},
			want: `compare.ignore_headers[0]: "*" is not a valid header name: "*" alone is only allowed in compare_headers`},
		{name: "empty redact header", rules: Rules{RedactHeaders: []string{""}}, want: `compare.redact_headers[0]: "" is not a valid header name: empty`},
		{name: "empty redact key", rules: Rules{RedactKeys: []string{"_-"}},
			want: `compare.redact_keys[0]: "_-" is not a valid key: it must have 1 to 256 bytes besides - and _`},
		{name: "several problems", rules: Rules{IgnorePaths: []string{"x"}, NumericTolerance: &Tolerance{Relative: -1}},
			want: `compare.ignore_paths[0]: "x" is not a valid path: must start with "$"; compare.numeric_tolerance.relative: -1 is not valid: it must be a number from 0 to 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rules.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				if rs, err := Compile(tt.rules); err != nil || !reflect.DeepEqual(rs.Rules(), tt.rules) {
					t.Fatalf("Compile: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate() = %v\nwant         %s", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidRules) {
				t.Fatalf("%v does not wrap ErrInvalidRules", err)
			}
			var re *RuleError
			if !errors.As(err, &re) || re.Field == "" {
				t.Fatalf("no *RuleError in %v", err)
			}
			if rs, err := Compile(tt.rules); rs != nil || err == nil {
				t.Fatalf("Compile accepted invalid rules")
			}
		})
	}
}

// TestRulesJSON checks the API spelling of the rules object.
func TestRulesJSON(t *testing.T) {
	in := `{"ignore_paths":["$..updated_at"],"ignore_headers":["X-A"],"compare_headers":["X-B"],"unordered_arrays":["$.t"],
		"array_keys":{"$.items":"id"},"numeric_tolerance":{"absolute":0.1,"relative":0.01},"status_class_only":true,
		"redact_headers":["X-S"],"redact_keys":["pin"]}`
	var r Rules
	dec := json.NewDecoder(strings.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	want := Rules{IgnorePaths: []string{"$..updated_at"}, IgnoreHeaders: []string{"X-A"}, CompareHeaders: []string{"X-B"},
		UnorderedArrays: []string{"$.t"}, ArrayKeys: map[string]string{"$.items": "id"}, NumericTolerance: &Tolerance{Absolute: 0.1, Relative: 0.01},
		StatusClassOnly: true, RedactHeaders: []string{"X-S"}, RedactKeys: []string{"pin"}}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("decoded %+v", r)
	}
	if out, _ := json.Marshal(Rules{}); string(out) != "{}" {
		t.Fatalf("zero rules marshal to %s", out)
	}
	if !(Rules{}).IsZero() || want.IsZero() {
		t.Fatal("IsZero")
	}
}

// TestPathRoundTrip checks that every diff path is a rule path matching
// exactly itself: a path copied from a report can be pasted into a rule.
func TestPathRoundTrip(t *testing.T) {
	p := resp(200, js, `{"a":{"b c":[1,{"\"q\\\n":[true]}],"x-y":1,"é":1,"_z9":[[1]]}}`)
	s := resp(200, js, `{"a":{"b c":[1,{"\"q\\\n":[false]}],"x-y":2,"é":2,"_z9":[[2]]}}`)
	r := Pair(p, s)
	if len(r.Diffs) != 4 {
		t.Fatalf("diffs %v", r.Diffs)
	}
	for _, df := range r.Diffs {
		for _, rule := range []string{df.Path, df.Generalized} {
			rs, err := Compile(Rules{IgnorePaths: []string{rule}})
			if err != nil {
				t.Fatalf("path %q is not a valid rule: %v", rule, err)
			}
			got := Comparer{Rules: rs}.Pair(p, s)
			for _, g := range got.Diffs {
				if g.Path == df.Path {
					t.Errorf("ignoring %q left %v", rule, g)
				}
			}
			if len(got.Diffs) != 3 {
				t.Errorf("ignoring %q left %v, want the 3 others", rule, got.Diffs)
			}
		}
	}
}

func TestGeneralize(t *testing.T) {
	for in, want := range map[string]string{
		"status":                "status",
		"header.Content-Type":   "header.Content-Type",
		"$":                     "$",
		"$.a.b":                 "$.a.b",
		"$.items[3].price":      "$.items[*].price",
		"$[0][12][3]":           "$[*][*][*]",
		`$["a[1]"][2]`:          `$["a[1]"][*]`,
		`$["q\"[1]\\"][0].x[9]`: `$["q\"[1]\\"][*].x[*]`,
		"$[":                    "$[",
		"$[x]":                  "$[x]",
		`$["unterminated`:       `$["unterminated`,
	} {
		if got := Generalize(in); got != want {
			t.Errorf("Generalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNoise(t *testing.T) {
	shadow := []Diff{d("status", KindStatus), d("$.id", KindValueChanged), d("$.ts", KindValueChanged), d("$.items[1].v", KindValueChanged), d("header.Etag", KindHeader)}
	secondary := []Diff{d("$.ts", KindValueChanged), d("header.Etag", KindHeader), d("$.items[0].v", KindValueChanged), d("$.id.x", KindMissingField)}
	real, noise := Noise(shadow, secondary)
	if want := []Diff{d("status", KindStatus), d("$.id", KindValueChanged), d("$.items[1].v", KindValueChanged)}; !reflect.DeepEqual(real, want) {
		t.Errorf("real = %v", real)
	}
	if want := []Diff{d("$.ts", KindValueChanged), d("header.Etag", KindHeader)}; !reflect.DeepEqual(noise, want) {
		t.Errorf("noise = %v", noise)
	}
	if real, noise := Noise(shadow, nil); !reflect.DeepEqual(real, shadow) || noise != nil {
		t.Errorf("no secondary: %v %v", real, noise)
	}
	if real, noise := Noise(nil, secondary); real != nil || noise != nil {
		t.Errorf("no shadow diffs: %v %v", real, noise)
	}
	// A kind that differs still makes noise: the path is what is unstable.
	if _, noise := Noise([]Diff{d("$.ts", KindTypeChanged)}, []Diff{d("$.ts", KindValueChanged)}); len(noise) != 1 {
		t.Errorf("noise by path: %v", noise)
	}
}

func TestFingerprint(t *testing.T) {
	a := []Diff{d("$.items[3].price", KindValueChanged), d("status", KindStatus), d("$.items[7].price", KindValueChanged)}
	b := []Diff{d("status", KindStatus), d("$.items[0].price", KindValueChanged)}
	fa, fb := Fingerprint("/orders", a), Fingerprint("/orders", b)
	if len(fa) != FingerprintLen || strings.Trim(fa, "0123456789abcdef") != "" {
		t.Fatalf("fingerprint %q", fa)
	}
	if fa != fb {
		t.Errorf("same class, other indices, order and repetitions: %s vs %s", fa, fb)
	}
	if f := Fingerprint("/orders", a); f != fa {
		t.Errorf("not stable: %s vs %s", f, fa)
	}
	// Without Generalized the path is generalized.
	if f := Fingerprint("/orders", []Diff{{Path: "status", Kind: KindStatus}, {Path: "$.items[1].price", Kind: KindValueChanged}}); f != fa {
		t.Errorf("ungeneralized input: %s vs %s", f, fa)
	}
	for _, other := range []struct {
		route string
		diffs []Diff
	}{
		{"/users", b},
		{"/orders", []Diff{d("status", KindStatus)}},
		{"/orders", []Diff{d("status", KindStatus), d("$.items[0].price", KindTypeChanged)}},
		{"/orders", []Diff{d("status", KindStatus), d("$.items[0].price", KindValueChanged), d("$.x", KindValueChanged)}},
		{"/orders\x00", b},
	} {
		if f := Fingerprint(other.route, other.diffs); f == fa {
			t.Errorf("%q %v has the same fingerprint", other.route, other.diffs)
		}
	}
	if Fingerprint("/orders", nil) != "" {
		t.Error("fingerprint of no diffs")
	}
	// The fingerprint is a stored grouping key: it must not change between
	// versions of this package.
	if f := Fingerprint("/orders", []Diff{d("$.a", KindValueChanged)}); f != "14fe1c4be9ed0218" {
		t.Errorf("fingerprint changed: %s", f)
	}
}

func TestRedact(t *testing.T) {
	rs := compiled(t, Rules{RedactHeaders: []string{"X-Session"}, RedactKeys: []string{"ssn"}})
	h := http.Header{
		"Authorization": {"Bearer abc"}, "Cookie": {"a=1"}, "Set-Cookie": {"s=1", "t=2"}, "X-Api-Key": {"k"}, "X-Auth-Token": {"t"},
		"X-Session": {"s"}, "Content-Type": {"application/json"}, "X-Trace": {"keep"},
	}
	body := `{"user":{"name":"ann","password":"hunter2","SSN":"123","profile":{"accessToken":"x","client-secret":{"nested":[1,2]}}},` +
		`"items":[{"id":1,"token":null},{"id":2,"api_key":42}],"db_password":["a","b"],"token_type":"bearer"}`
	in := &envelope.Response{Status: 200, Headers: h, Body: []byte(body), BodySize: int64(len(body))}
	orig := string(in.Body)
	got := Redact(in, rs, nil)
	wantBody := `{"user":{"name":"ann","password":"[REDACTED]","SSN":"[REDACTED]","profile":{"accessToken":"[REDACTED]","client-secret":"[REDACTED]"}},` +
		`"items":[{"id":1,"token":"[REDACTED]"},{"id":2,"api_key":"[REDACTED]"}],"db_password":"[REDACTED]","token_type":"bearer"}`
	if string(got.Body) != wantBody || got.BodySize != int64(len(wantBody)) || got.BodyTruncated {
		t.Errorf("body = %s (size %d)", got.Body, got.BodySize)
	}
	for _, k := range []string{"Authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "X-Session"} {
		if got.Headers.Get(k) != Redacted {
			t.Errorf("header %s = %q", k, got.Headers.Get(k))
		}
	}
	if v := got.Headers["Set-Cookie"]; len(v) != 2 || v[0] != Redacted || v[1] != Redacted {
		t.Errorf("Set-Cookie = %v", v)
	}
	if got.Headers.Get("X-Trace") != "keep" || got.Headers.Get(RedactionHeader) != "" {
		t.Errorf("headers %v", got.Headers)
	}
	if string(in.Body) != orig || in.Headers.Get("Authorization") != "Bearer abc" {
		t.Error("the original was modified")
	}
	if !json.Valid(got.Body) {
		t.Error("redacted JSON is not valid")
	}

	cases := []struct {
		name, ct, enc, body string
		truncated           bool
		want, note          string
	}{
		{name: "form", ct: form, body: "user=ann&password=hunter2&Api-Key=k;token=t&x=1&p%61ssword=2&bad%zz=3&flag",
			want: "user=ann&password=%5BREDACTED%5D&Api-Key=%5BREDACTED%5D;token=%5BREDACTED%5D&x=1&p%61ssword=%5BREDACTED%5D&bad%zz=%5BREDACTED%5D&flag"},
		{name: "escaped key", ct: js, body: `{"pass\u0077ord":"x"}`, want: `{"pass\u0077ord":"[REDACTED]"}`},
		{name: "truncated JSON, cut inside a secret", ct: js, body: `{"a":1,"password":"hunt`, truncated: true, want: `{"a":1,"password":"[REDACTED]"`},
		{name: "truncated JSON, cut elsewhere", ct: js, body: `{"a":[1,2,{"b":"x`, truncated: true, want: `{"a":[1,2,{"b":"x`},
		{name: "truncated JSON, cut in a key", ct: js, body: `{"a":1,"passw`, truncated: true, want: `{"a":1,"passw`},
		{name: "invalid JSON is dropped", ct: js, body: `{"password":"x",}`, want: "", note: "body dropped: not valid JSON: expected a member name at offset 16"},
		{name: "JSON-looking text is redacted", ct: "text/plain", body: `[{"secret":1}]`, want: `[{"secret":"[REDACTED]"}]`},
		{name: "text is kept", ct: "text/plain", body: "password=x", want: "password=x"},
		{name: "broken JSON-looking text is kept", ct: "text/plain", body: `{"secret":1`, want: `{"secret":1`},
		{name: "gzip JSON is decoded and redacted", ct: js, enc: "gzip", body: `{"token":"t"}`, want: `{"token":"[REDACTED]"}`, note: "body decoded from gzip"},
		{name: "undecodable body is dropped", ct: "text/plain", enc: "br", body: "x", want: "", note: "body dropped: could not decode br:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := resp(200, tc.ct, tc.body)
			r.BodyTruncated = tc.truncated
			if tc.truncated {
				r.BodySize = 1000
			}
			if tc.enc == "gzip" {
				r = encoded(r, "gzip")
			} else if tc.enc != "" {
				r.Headers.Set("Content-Encoding", tc.enc)
			}
			got := Redact(r, nil, nil)
			if string(got.Body) != tc.want {
				t.Errorf("body = %q\nwant   %q", got.Body, tc.want)
			}
			if n := got.Headers.Get(RedactionHeader); !strings.HasPrefix(n, tc.note) || (tc.note == "") != (n == "") {
				t.Errorf("note = %q, want %q", n, tc.note)
			}
			if tc.enc == "gzip" && got.Headers.Get("Content-Encoding") != "" {
				t.Error("Content-Encoding kept on a decoded body")
			}
			if tc.want == "" && !got.BodyTruncated {
				t.Error("a dropped body must be flagged truncated")
			}
		})
	}

	req := &envelope.Request{Method: "POST", Path: "/login", RawQuery: "next=/a&access_token=abc&x=1",
		Headers: http.Header{"Authorization": {"Basic x"}, "Content-Type": {form}}, Body: []byte("user=a&password=b"), BodySize: 17}
	rr := RedactRequest(req, nil)
	if rr.RawQuery != "next=/a&access_token=%5BREDACTED%5D&x=1" || string(rr.Body) != "user=a&password=%5BREDACTED%5D" ||
		rr.Headers.Get("Authorization") != Redacted || rr.Method != "POST" || rr.Path != "/login" {
		t.Errorf("request %+v", rr)
	}
	if req.RawQuery != "next=/a&access_token=abc&x=1" || string(req.Body) != "user=a&password=b" {
		t.Error("the original request was modified")
	}
	if r := Redact(nil, nil, nil); r.Body != nil || r.Headers != nil || r.Status != 0 {
		t.Error("nil response")
	}
}

// content_type_params and security_headers are off by default; on, they
// compare what they name, semantically, and ignore_headers still wins.
func TestHeaderOptIns(t *testing.T) {
	js := func(ct string, kv ...string) *envelope.Response {
		r := resp(200, ct, "{}")
		return hdr(r, kv...)
	}
	paths := func(r Result) []string {
		var out []string
		for _, d := range r.Diffs {
			out = append(out, d.Path)
		}
		return out
	}
	both := compiled(t, Rules{ContentTypeParams: true, SecurityHeaders: true})
	for _, c := range []struct {
		name    string
		rules   *Ruleset
		a, b    *envelope.Response
		want    []string
		ctMatch bool
	}{
		{"charset ignored by default", nil, js("application/json; charset=utf-8"), js("application/json; charset=latin1"), nil, true},
		{"charset compared", both, js("application/json; charset=utf-8"), js("application/json; charset=latin1"), []string{PathContentType}, true},
		{"charset case and spacing", both, js("application/json; charset=utf-8"), js("Application/JSON;charset=UTF-8"), nil, true},
		{"a parameter more", both, js("text/plain"), js("text/plain; format=flowed"), []string{PathContentType}, true},
		{"media type still decides ContentTypeMatch", both, js("application/json; charset=utf-8"), js("text/html; charset=utf-8"), []string{PathContentType}, false},
		{"security headers ignored by default", nil, js("application/json", "X-Content-Type-Options", "nosniff"), js("application/json"), nil, true},
		{"nosniff dropped", both, js("application/json", "X-Content-Type-Options", "nosniff"), js("application/json"), []string{"header.X-Content-Type-Options"}, true},
		{"HSTS directives in another order", both, js("application/json", "Strict-Transport-Security", "max-age=60; includeSubDomains"),
			js("application/json", "Strict-Transport-Security", "includesubdomains;max-age=60"), nil, true},
		{"HSTS max-age shortened", both, js("application/json", "Strict-Transport-Security", "max-age=31536000"),
			js("application/json", "Strict-Transport-Security", "max-age=60"), []string{"header.Strict-Transport-Security"}, true},
		{"CSP reordered, nonces differ", both, js("application/json", "Content-Security-Policy", "default-src 'self'; script-src 'self' 'nonce-abc' https://cdn.example"),
			js("application/json", "Content-Security-Policy", "script-src https://cdn.example 'NONCE-xyz' 'SELF';default-src 'self'"), nil, true},
		{"CSP loosened", both, js("application/json", "Content-Security-Policy", "default-src 'self'"),
			js("application/json", "Content-Security-Policy", "default-src *"), []string{"header.Content-Security-Policy"}, true},
		{"named in compare_headers without the rule", compiled(t, Rules{CompareHeaders: []string{"Content-Security-Policy"}}),
			js("application/json", "Content-Security-Policy", "a 'nonce-1'"), js("application/json", "Content-Security-Policy", "a 'nonce-2'"), nil, true},
		{"ignore_headers wins", compiled(t, Rules{SecurityHeaders: true, IgnoreHeaders: []string{"Strict-Transport-Security"}}),
			js("application/json", "Strict-Transport-Security", "max-age=1"), js("application/json"), nil, true},
	} {
		r := Comparer{Rules: c.rules}.Pair(c.a, c.b)
		if !slices.Equal(paths(r), c.want) || r.ContentTypeMatch != c.ctMatch || r.HeadersMatch != (len(c.want) == 0) {
			t.Errorf("%s: diffs %v content type match %v headers match %v; want %v %v", c.name, paths(r), r.ContentTypeMatch, r.HeadersMatch, c.want, c.ctMatch)
		}
	}
	if (Rules{SecurityHeaders: true}).IsZero() || (Rules{ContentTypeParams: true}).IsZero() {
		t.Error("the opt-ins are not the defaults")
	}
}

func TestClassify(t *testing.T) {
	ipPort, ip := StringShape("10.0.0.1:80"), StringShape("10.0.0.1")
	shaped := func(path, kind string, before, after Shape) Diff {
		return Diff{Path: path, Generalized: Generalize(path), Kind: kind, Before: before, After: after}
	}
	shadow := []Diff{
		shaped("$.a[1].client", KindValueChanged, ipPort, ip), // a new shape
		shaped("$.b", KindValueChanged, ipPort, ipPort),       // the same shape
		d("$.c", KindValueChanged),                            // no shapes known: noise as before
		d("$.gone", KindMissingField),                         // the old version always has it
		d("$.opt", KindMissingField),                          // the old version has it or not
		shaped("$.d", KindValueChanged, ipPort, ip),           // primary and secondary disagree on the shape
	}
	secondary := []Diff{
		shaped("$.a[1].client", KindValueChanged, ipPort, ipPort), shaped("$.b", KindValueChanged, ipPort, ipPort),
		d("$.c", KindValueChanged), d("$.gone", KindValueChanged), d("$.opt", KindMissingField),
		shaped("$.d", KindValueChanged, ipPort, StringShape("")),
	}
	diffs, noise := Classify(shadow, secondary)
	if !slices.Equal(noise, []bool{false, true, true, false, true, true}) {
		t.Errorf("noise flags %v", noise)
	}
	want := Diff{Path: "$.a[1].client", Generalized: "$.a[*].client (string/ip:port -> string/ipv4)", Kind: KindFormatChanged, Before: ipPort, After: ip}
	if diffs[0] != want || diffs[3].Kind != KindMissingField || shadow[0].Kind != KindValueChanged {
		t.Errorf("diffs %+v (the input must not change: %+v)", diffs, shadow[0])
	}
	if diffs, noise := Classify(shadow[:1], nil); len(diffs) != 1 || noise[0] || diffs[0].Kind != KindValueChanged {
		t.Errorf("without a secondary nothing is noise or a format change: %+v %v", diffs, noise)
	}
	// Comparer.Shapes fills Before and After of value diffs only.
	r := Comparer{Shapes: true}.Pair(resp(200, "application/json", `{"a":"10.0.0.1:80","b":1,"c":[1]}`), resp(200, "application/json", `{"a":"10.0.0.1","b":"1","c":[]}`))
	if len(r.Diffs) != 4 || r.Diffs[0].Before != ipPort || r.Diffs[0].After != ip || r.Diffs[1].Kind != KindTypeChanged ||
		r.Diffs[1].Before.String() != "number" || r.Diffs[1].After.String() != "string/integer" || r.Diffs[2].Before.Type != 0 {
		t.Errorf("shapes: %+v", r.Diffs)
	}
	if r := Pair(resp(200, "application/json", `{"a":"x"}`), resp(200, "application/json", `{"a":"y"}`)); r.Diffs[0].Before.Type != 0 {
		t.Errorf("shapes without Shapes: %+v", r.Diffs)
	}
}
