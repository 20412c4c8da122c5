package compare

import (
	"strings"
	"testing"
)

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

// A JSON sequence (NDJSON, JSON Lines, RFC 7464) is redacted text by text,
// the bytes between texts kept; a record that is not JSON drops the body,
// except a last one cut short by truncation.
func TestRedactSeq(t *testing.T) {
	for _, c := range []struct {
		src, want, wantErr string
		prefix             bool
	}{
		{src: "{\"password\":\"a\"}\n\n{\"b\":1,\"token\":[2]}\r\n", want: "{\"password\":\"[REDACTED]\"}\n\n{\"b\":1,\"token\":\"[REDACTED]\"}\r\n"},
		{src: "\x1e{\"secret\":\n \"x\"}\n\x1e{\"a\":1}\n", want: "\x1e{\"secret\":\n \"[REDACTED]\"}\n\x1e{\"a\":1}\n"},
		{src: "{\"a\":1}\nnot json\n", wantErr: "line 2: "},
		{src: "{\"a\":1}\n{\"password\":\"abc", prefix: true, want: "{\"a\":1}\n{\"password\":\"[REDACTED]\""},
		{src: "{\"a\":\n{\"b\":2}\n", prefix: true, wantErr: "line 1: "},
	} {
		got, err := redactSeq([]byte(c.src), c.prefix, defaultRuleset)
		switch {
		case c.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), c.wantErr)):
			t.Errorf("redactSeq(%q) = %q, %v; want error %q", c.src, got, err, c.wantErr)
		case c.wantErr == "" && (err != nil || string(got) != c.want):
			t.Errorf("redactSeq(%q) = %q, %v; want %q", c.src, got, err, c.want)
		}
	}
	r := Redact(hdr(resp(200, "application/x-ndjson", "{\"api_key\":\"k\"}\n"), "X-A", "b"), nil, nil)
	if string(r.Body) != "{\"api_key\":\"[REDACTED]\"}\n" {
		t.Errorf("Redact of an NDJSON body: %q", r.Body)
	}
	if r := Redact(resp(200, "application/x-ndjson", "{\"password\":\"k\"}\n{"), nil, nil); r.Body != nil || !r.BodyTruncated {
		t.Errorf("an NDJSON body that is not one must be dropped: %q", r.Body)
	}
}
