package compare

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

// Credentials of each kind, made up, in the shapes the real ones have.
var testSecrets = map[string]string{
	"jwt":          "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
	"aws key id":   "AKIAIOSFODNN7EXAMPLE",
	"gcp api key":  "AIzaSyA1234567890abcdefghijklmnopqrstuv",
	"gcp oauth":    "ya29.a0AfH6SMBx1234567890abcdefghijkl",
	"azure key":    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
	"azure sas":    "sv=2022-11-02&sig=Z%2FRHIX5Xcg0Mq2rqI3OlWTjEg2tYkboXr1P9ZUXDtkk%3D",
	"bearer":       "Bearer 0b79bab50daca910b000d4f1a2b675d604257e42",
	"stripe":       "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
	"github":       "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
	"slack":        "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
	"private key":  "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq98fN\nq8w4Z9Kx==\n-----END RSA PRIVATE KEY-----",
	"cut pem":      "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
	"openai":       "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
	"gitlab token": "glpat-abcdefghij0123456789",
}

func TestMaskSecretsInJSONBodies(t *testing.T) {
	for name, secret := range testSecrets {
		body, _ := json.Marshal(map[string]any{"note": "before " + secret + " after", "n": 12345678, "user": "bob"})
		r := &envelope.Response{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: body, BodySize: int64(len(body))}
		got := Redact(r, nil, nil)
		if !json.Valid(got.Body) {
			t.Errorf("%s: invalid JSON %s", name, got.Body)
			continue
		}
		var m map[string]any
		_ = json.Unmarshal(got.Body, &m)
		if m["note"] != "before "+Redacted+" after" && !(name == "azure sas" && m["note"] == "before sv=2022-11-02&"+Redacted+" after") {
			t.Errorf("%s: note %q", name, m["note"])
		}
		if m["user"] != "bob" || m["n"] != float64(12345678) {
			t.Errorf("%s: other members changed: %s", name, got.Body)
		}
		if got.BodySize != int64(len(got.Body)) {
			t.Errorf("%s: body_size %d for %d bytes", name, got.BodySize, len(got.Body))
		}
	}
}

func TestMaskSecretsInTextAndHeaders(t *testing.T) {
	pem := testSecrets["private key"]
	body := []byte("key:\n" + pem + "\nend\n")
	r := &envelope.Response{Headers: http.Header{"Content-Type": {"text/plain"}, "Location": {"/cb?code=" + testSecrets["jwt"]}}, Body: body, BodySize: int64(len(body))}
	got := Redact(r, nil, nil)
	if string(got.Body) != "key:\n"+Redacted+"\nend\n" {
		t.Errorf("text body %q", got.Body)
	}
	if got.Headers.Get("Location") != "/cb?code="+Redacted {
		t.Errorf("Location %q", got.Headers.Get("Location"))
	}
	plain := []byte(`{"a":"nothing to see","b":[1,2,3]}`)
	if out := MaskSecrets(plain, nil); &out[0] != &plain[0] {
		t.Error("MaskSecrets copied a body without secrets")
	}
	q := RedactRequest(&envelope.Request{RawQuery: "page=2&id_hint=" + testSecrets["jwt"]}, nil)
	if q.RawQuery != "page=2&id_hint="+Redacted {
		t.Errorf("query %q", q.RawQuery)
	}
}

func TestEchoedCookiesAreMasked(t *testing.T) {
	req := http.Header{"Cookie": {`session=Zm9vYmFyYmF6cXV4; lang=en; n=1234567890; "q"="x\"y"`}, "Authorization": {"Token abcd1234efgh5678"}}
	echoes := RequestEchoes(req)
	if len(echoes) != 2 {
		t.Fatalf("echoes %q, want the session cookie and the Authorization credential", echoes)
	}
	body := []byte(`{"debug":{"cookie_seen":"session=Zm9vYmFyYmF6cXV4","lang":"en","n":1234567890,"auth":"abcd1234efgh5678"}}`)
	r := &envelope.Response{Headers: http.Header{"Content-Type": {"application/json"}}, Body: body, BodySize: int64(len(body))}
	got := Redact(r, nil, echoes)
	want := `{"debug":{"cookie_seen":"session=[REDACTED]","lang":"en","n":1234567890,"auth":"[REDACTED]"}}`
	if string(got.Body) != want {
		t.Errorf("got  %s\nwant %s", got.Body, want)
	}
}

func TestSummaryMasksSecrets(t *testing.T) {
	jwt := testSecrets["jwt"]
	text := func(s string) *envelope.Response {
		return &envelope.Response{Status: 200, Headers: http.Header{"Content-Type": {"text/plain"}}, Body: []byte(s), BodySize: int64(len(s))}
	}
	// The first differing byte is right after a JWT: the snippet starts in
	// its middle, where no pattern could recognize it.
	r := Pair(text("user=bob token="+jwt+" x=1"), text("user=bob token="+jwt+" x=2"))
	if r.Summary == "" || strings.Contains(r.Summary, jwt[len(jwt)-10:]) || !strings.Contains(r.Summary, Redacted) {
		t.Errorf("summary %q shows the JWT", r.Summary)
	}
	cookie := "Zm9vYmFyYmF6cXV4cXV1eA"
	c := Comparer{RequestHeaders: http.Header{"Cookie": {"sid=" + cookie}}}
	r = c.Pair(text("hello "+cookie+" v1"), text("hello "+cookie+" v2"))
	if strings.Contains(r.Summary, cookie[len(cookie)-8:]) || !strings.Contains(r.Summary, Redacted) {
		t.Errorf("summary %q shows the echoed cookie", r.Summary)
	}
	r = Pair(text("a=1\nb=2"), text("a=1\nb=3"))
	if r.Summary != `line 2: -"b=2" / +"b=3"` {
		t.Errorf("plain summary %q", r.Summary)
	}
}

// BenchmarkMaskSecrets is the cost of masking by value a 64 KiB JSON body
// (an example's cap) without a credential (the hint scan alone) and with
// one JWT in it (the pattern runs).
func BenchmarkMaskSecrets(b *testing.B) {
	clean := []byte(strings.Repeat(`{"id":12345,"name":"a thing with a name","tags":["x","y"]},`, 1100))
	withJWT := append(append([]byte(nil), clean[:len(clean)/2]...), []byte(`"`+testSecrets["jwt"]+`"`)...)
	withJWT = append(withJWT, clean[len(clean)/2:]...)
	for name, body := range map[string][]byte{"clean-64KiB": clean, "jwt-64KiB": withJWT} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				MaskSecrets(body, nil)
			}
		})
	}
}

func TestHeaderEchoesAndMaskEchoes(t *testing.T) {
	h := http.Header{
		"Cookie":        {"sid=session-value-123; lang=en; n=12345678901"},
		"Authorization": {"Bearer token-value-abc"},
		"X-Auth-Token":  {"custom-secret-xyz"},
		"Accept":        {"application/json-value"},
	}
	if got := HeaderEchoes(http.Header{"Accept": {"x"}}, []string{"Cookie"}); got != nil {
		t.Errorf("no sensitive header: %q", got)
	}
	echoes := HeaderEchoes(h, []string{"Cookie", "Authorization", "X-Auth-Token"})
	var got []string
	for _, e := range echoes {
		got = append(got, string(e))
	}
	slices.Sort(got)
	want := []string{"custom-secret-xyz", "session-value-123", "token-value-abc"}
	if !slices.Equal(got, want) {
		t.Errorf("echoes %q, want %q", got, want)
	}

	body := []byte(`{"sid":"session-value-123","auth":"Bearer token-value-abc","lang":"en","jwt":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.x"}`)
	out := MaskEchoes(body, echoes)
	wantBody := `{"sid":"[REDACTED]","auth":"Bearer [REDACTED]","lang":"en","jwt":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.x"}`
	if string(out) != wantBody {
		t.Errorf("masked %s", out)
	}
	if plain := []byte(`{"a":1}`); &MaskEchoes(plain, echoes)[0] != &plain[0] {
		t.Error("nothing to mask, but a copy")
	}

	resp := envelope.Response{
		Headers:  http.Header{"X-Echo": {"s=session-value-123"}, "Set-Cookie": {"dlseal:v1:k:abc"}},
		Body:     body,
		BodySize: int64(len(body)),
	}
	orig := resp.Headers
	MaskEchoesResponse(&resp, echoes, []string{"Set-Cookie"})
	if string(resp.Body) != wantBody || resp.BodySize != int64(len(wantBody)) || resp.Headers.Get("X-Echo") != "s=[REDACTED]" {
		t.Errorf("response %v %d %s", resp.Headers, resp.BodySize, resp.Body)
	}
	if orig.Get("X-Echo") != "s=session-value-123" || string(body) == wantBody {
		t.Error("the shared original was modified")
	}
	gz := envelope.Response{Headers: http.Header{"Content-Encoding": {"gzip"}}, Body: []byte("session-value-123")}
	MaskEchoesResponse(&gz, echoes, nil)
	if string(gz.Body) != "session-value-123" {
		t.Error("an encoded body was changed")
	}
}
