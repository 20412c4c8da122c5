package compare

import "testing"

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
