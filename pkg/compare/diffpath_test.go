package compare

import "testing"

// TestWriteKey pins how member names are written in diff paths: bare
// after "." when they are identifiers, else bracket-quoted with JSON
// escaping, invalid UTF-8 as U+FFFD, so that a path is valid UTF-8 and a
// valid rule path.
func TestWriteKey(t *testing.T) {
	tests := []struct{ key, want string }{
		{"a", ".a"}, {"_x9", "._x9"}, {"9x", `["9x"]`}, {"", `[""]`}, {"x-id", `["x-id"]`}, {"a b", `["a b"]`},
		{`q"b\s`, `["q\"b\\s"]`}, {"l\n\r\t", `["l\n\r\t"]`}, {"\x01\x7f", `["\u0001\u007f"]`}, {"é", `["é"]`},
		{"a\xffb", "[\"a\uFFFDb\"]"},
	}
	for _, tt := range tests {
		var w walker
		var d doc
		src := `{` + quoteJSON(tt.key) + `:1}`
		if err := d.parse([]byte(src)); err != nil {
			t.Fatalf("parse(%s): %v", src, err)
		}
		w.pushKey(&d, 1)
		w.pushIndex(3)
		path, gen := w.pathStrings()
		if path != "$"+tt.want+"[3]" || gen != "$"+tt.want+"[*]" {
			t.Errorf("key %q: path %s, generalized %s; want $%s[3]", tt.key, path, gen, tt.want)
		}
		if _, err := Compile(Rules{IgnorePaths: []string{path}}); err != nil {
			t.Errorf("key %q: %s is not a rule path: %v", tt.key, path, err)
		}
	}
}

// quoteJSON quotes s as a JSON string, keeping invalid UTF-8 as it is.
func quoteJSON(s string) string {
	out := []byte{'"'}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20:
			out = append(out, `\u00`...)
			out = append(out, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		default:
			out = append(out, c)
		}
	}
	return string(append(out, '"'))
}
