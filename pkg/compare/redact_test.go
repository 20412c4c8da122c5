package compare

import "testing"

// TestRedactJSON pins how a JSON text is redacted, a prefix of one (a
// truncated body) included: the output never ends with part of a
// sensitive value, and a text that is not JSON is an error.
func TestRedactJSON(t *testing.T) {
	tests := []struct {
		src, want, wantErr string
		prefix             bool
	}{
		{src: `{"a":1,"password":"x","b":{"Api-Key":[1,{"c":2}]},"d":[{"token":null}]} `,
			want: `{"a":1,"password":"[REDACTED]","b":{"Api-Key":"[REDACTED]"},"d":[{"token":"[REDACTED]"}]} `},
		{src: `{"pass\u0077ord" : "x" , "n\u0061me":"y"}`, want: `{"pass\u0077ord" : "[REDACTED]" , "n\u0061me":"y"}`},
		{src: `{"secret":{"password":"x"}}`, want: `{"secret":"[REDACTED]"}`},
		{src: `[1,"password",{"x":"token"}]`, want: `[1,"password",{"x":"token"}]`},
		{src: `{"a":1,}`, wantErr: "expected a member name at offset 7"},
		{src: `{"a":1`, wantErr: "unexpected end of input at offset 6"},
		{src: `{"a":"b`, wantErr: "unexpected end of input at offset 7"},
		{src: `{"password":{"a":[}}`, wantErr: "unexpected character '}' at offset 18"},
		{src: `{"a":1`, prefix: true, want: `{"a":1`},
		{src: `{"a":"b","secr`, prefix: true, want: `{"a":"b","secr`},
		{src: `{"password"`, prefix: true, want: `{"password"`},
		{src: `{"password": `, prefix: true, want: `{"password": `},
		{src: `{"password": "abc`, prefix: true, want: `{"password": "[REDACTED]"`},
		{src: `{"password":tr`, prefix: true, want: `{"password":"[REDACTED]"`},
		{src: `{"password":-`, prefix: true, want: `{"password":"[REDACTED]"`},
		{src: `{"password":12`, prefix: true, want: `{"password":"[REDACTED]"`},
		{src: `{"token":{"token":"`, prefix: true, want: `{"token":"[REDACTED]"`},
		{src: `{"token":[1,2],"b":[3,`, prefix: true, want: `{"token":"[REDACTED]","b":[3,`},
		{src: `{"a":[1,}`, prefix: true, wantErr: "unexpected character '}' at offset 8"},
	}
	for _, tt := range tests {
		got, err := redactJSON([]byte(tt.src), tt.prefix, defaultRuleset)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("redactJSON(%q, %v) = %q, %v; want error %q", tt.src, tt.prefix, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("redactJSON(%q, %v) = %q, %v; want %q", tt.src, tt.prefix, got, err, tt.want)
		}
	}
}
