package compare

import "testing"

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, "plain"},
		{`a\"b\\c\/d`, `a"b\c/d`},
		{`\b\f\n\r\t`, "\b\f\n\r\t"},
		{`\u0041\u00e9\u20ac`, "Aé€"},
		{`\ud83d\ude00`, "😀"},
		{`\ud83d`, "\uFFFD"},
		{`\ude00x`, "\uFFFDx"},
		{`\ud83d\u0041`, "\uFFFDA"},
		{"raw \xff kept", "raw \xff kept"},
	}
	for _, tt := range tests {
		if got := unescape([]byte(tt.in)); got != tt.want {
			t.Errorf("unescape(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if !strEqual([]byte(`"\u0041"`), true, []byte(`"A"`), false) || strEqual([]byte(`"a"`), false, []byte(`"b"`), false) {
		t.Error("strEqual does not compare by value")
	}
	if !nameEqual([]byte(`\u0061`), true, []byte(`a`), false) || nameEqual([]byte(`a`), false, []byte(`A`), false) {
		t.Error("nameEqual does not compare by value")
	}
}
