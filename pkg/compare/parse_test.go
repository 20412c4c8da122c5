package compare

import (
	"strings"
	"testing"
)

func TestParseStrict(t *testing.T) {
	valid := []string{`0`, `-0.5e+10`, `"a\u00e9\"\\\/\b\f\n\r\t"`, `[]`, `{}`, ` [ 1 , { "a" : [ ] } ] `, `null`, `true`, `false`,
		`{"a":{"b":{"c":[[[]]]}}}`, "\"\xff\""}
	invalid := []string{``, ` `, `01`, `1.`, `.5`, `-`, `1e`, `+1`, `[1,]`, `{"a":1,}`, `{"a"}`, `{a:1}`, `[1 2]`, `"a`, `"\x"`, `"\u12"`,
		"\"a\nb\"", `tru`, `nul`, `[`, `{"a":1`, `1 2`, `]`, `{]`, `[}`, `NaN`, `"\ud800`}
	for _, s := range valid {
		var dd doc
		if err := dd.parse([]byte(s)); err != nil {
			t.Errorf("parse(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range invalid {
		var dd doc
		if err := dd.parse([]byte(s)); err == nil {
			t.Errorf("parse(%q) = nil, want an error", s)
		}
	}
}

// A JSON sequence parses as the array of its records; a record that is not
// exactly one JSON text is an error naming its line, whatever the others.
func TestParseSeq(t *testing.T) {
	for src, want := range map[string]string{
		"{\"a\":1}\n[2]\n\"x\"\n":          "",
		"":                                 "",
		"\n\r\n  \n":                       "",
		"{\"a\":1}\n{\"a\":":               "line 2: ",
		"1\n[1\n2],3\n":                    "line 2: not exactly one JSON text",
		"1 2\n":                            "line 1: ",
		"{\"a\":1}\n\n{\"b\":2} x\n":       "line 3: ",
		"\x1e{\"a\":\n1}\n\x1e{\"b\":2}\n": "",
		"\x1e{\"a\":\n1}\n\x1e{\"b\":2]\n": "line 3: ",
		"\x1e1 2\n":                        "line 1: ",
	} {
		d := getDoc()
		err := d.parseSeq([]byte(src))
		switch {
		case want == "" && err != nil:
			t.Errorf("parseSeq(%q): %v", src, err)
		case want != "" && (err == nil || !strings.HasPrefix(err.Error(), want)):
			t.Errorf("parseSeq(%q) = %v, want an error starting %q", src, err, want)
		case err == nil && d.nodes[0].kind != tArray:
			t.Errorf("parseSeq(%q): root %d", src, d.nodes[0].kind)
		}
		putDoc(d)
	}
	// Compared as an array: a truncated sequence is compared as text, one
	// that does not parse too, with a note.
	nd := "application/x-ndjson"
	if r := Pair(resp(200, nd, "{\"a\":1}\n"), resp(200, nd, "{\"a\" : 1}\r\n\n")); !r.Match || r.BodyFormat != FormatNDJSON {
		t.Errorf("equal sequences: %+v", r)
	}
	if r := Pair(resp(200, nd, "{\"a\":1}\n"), resp(200, nd, "{\"a\":1}\n{")); r.BodyFormat != FormatText ||
		!strings.Contains(r.Note, "shadow body is not valid JSON sequence (line 2: ") {
		t.Errorf("a broken sequence: %+v", r)
	}
	trunc := resp(200, nd, "{\"a\":1}\n{\"a\":2}\n")
	trunc.BodyTruncated, trunc.BodySize = true, 100
	if r := Pair(trunc, resp(200, nd, "{\"a\":1}\n{\"a\":3}\n")); r.BodyFormat != FormatText || !r.Truncated {
		t.Errorf("a truncated sequence: %+v", r)
	}
}
