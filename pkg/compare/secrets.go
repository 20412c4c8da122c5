package compare

import (
	"bytes"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// secretPattern matches values that are credentials whatever key or line
// holds them: JWTs (and a JWT's header.payload when cut short), AWS access
// key ids, GCP API keys and OAuth tokens, Azure storage account keys and SAS
// signatures, Bearer and Basic credentials, PEM private keys (also with
// JSON-escaped line breaks, and cut short), and the API keys of common
// services (sk_live_..., GitHub, GitLab, Slack, npm, SendGrid, OpenAI).
// No alternative matches a quote or a backslash that is not part of an
// escape, so masking inside a JSON string keeps the JSON valid.
var secretPattern = regexp.MustCompile(strings.Join([]string{
	`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)?`,
	`(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}`,
	`AIza[0-9A-Za-z_-]{35}`,
	`ya29\.[0-9A-Za-z_-]{20,}`,
	`1//0[0-9A-Za-z_-]{30,}`,
	`(?i:AccountKey)=[A-Za-z0-9+/]{40,}={0,2}`,
	`sig=[A-Za-z0-9%+/]{20,}={0,2}`,
	`(?i:\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/-]{8,}={0,2}`,
	`-----BEGIN[A-Z ]*PRIVATE KEY-----(?:(?:[A-Za-z0-9+/= \t\r\n:,.-]|\\[nrt])*?-----END[A-Z ]*PRIVATE KEY-----|(?:[A-Za-z0-9+/=\r\n:,.]|\\[nrt])*)`,
	`\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}`,
	`\bwhsec_[0-9A-Za-z]{20,}`,
	`\bgh[pousr]_[A-Za-z0-9]{30,}`,
	`\bgithub_pat_[A-Za-z0-9_]{40,}`,
	`\bglpat-[A-Za-z0-9_-]{20,}`,
	`\bxox[abposr]-[A-Za-z0-9-]{10,}`,
	`\bnpm_[A-Za-z0-9]{36}`,
	`\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}`,
	`\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}`,
}, "|"))

// secretHints are literals of which every match of secretPattern contains
// one: a text with none of them is not scanned (most bodies).
var secretHints = [][]byte{
	[]byte("eyJ"), []byte("AKIA"), []byte("ASIA"), []byte("ABIA"), []byte("ACCA"), []byte("AIza"),
	[]byte("ya29."), []byte("1//0"), []byte("ccountKey="), []byte("CCOUNTKEY="), []byte("ccountkey="), []byte("sig="),
	[]byte("earer"), []byte("EARER"), []byte("asic"), []byte("ASIC"), []byte("PRIVATE KEY"),
	[]byte("k_live_"), []byte("k_test_"), []byte("whsec_"), []byte("ghp_"), []byte("gho_"), []byte("ghu_"),
	[]byte("ghs_"), []byte("ghr_"), []byte("github_pat_"),
	[]byte("glpat-"), []byte("xox"), []byte("npm_"), []byte("SG."), []byte("sk-"),
}

func mayHoldSecret(b []byte) bool {
	for _, h := range secretHints {
		if bytes.Contains(b, h) {
			return true
		}
	}
	return false
}

// Echoes are the credential values of one request (its cookies' values,
// the credentials of Authorization, Proxy-Authorization and X-Api-Key),
// masked wherever the pair's responses echo them back: a session cookie
// reflected in a body is as good as the cookie.
type Echoes [][]byte

// minEcho is the shortest value taken as a credential: shorter cookie
// values ("en", "1", "dark") would mask ordinary text.
const minEcho = 8

// RequestEchoes collects the credential values of a request's headers.
// Values shorter than 8 bytes, made of nothing but the characters of a
// JSON number, or with characters outside the URL-safe and base64
// alphabets (a quote, a backslash, a comma), are left out: masking them
// could change the structure of a JSON body.
func RequestEchoes(h http.Header) Echoes {
	var out Echoes
	add := func(v string) {
		v = strings.TrimSpace(v)
		if len(v) >= minEcho && echoSafe(v) {
			out = append(out, []byte(v))
		}
	}
	for _, line := range values(h, "Cookie") {
		for _, part := range strings.Split(line, ";") {
			if _, v, ok := strings.Cut(part, "="); ok {
				add(strings.Trim(strings.TrimSpace(v), `"`))
			}
		}
	}
	for _, name := range []string{"Authorization", "Proxy-Authorization"} {
		for _, v := range values(h, name) {
			if _, cred, ok := strings.Cut(strings.TrimSpace(v), " "); ok {
				add(cred)
			} else {
				add(v)
			}
		}
	}
	for _, v := range values(h, "X-Api-Key") {
		add(v)
	}
	return out
}

func echoSafe(v string) bool {
	number := true
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=%!*$&'()@", c) >= 0) {
			return false
		}
		number = number && strings.IndexByte("0123456789.eE+-", c) >= 0
	}
	return !number
}

// secretSpans returns the [start, end) offsets of the credentials in b:
// secretPattern's matches and the echoes, in order, merged where they
// overlap; nil when there are none.
func secretSpans(b []byte, echoes Echoes) [][2]int {
	var spans [][2]int
	if mayHoldSecret(b) {
		for _, m := range secretPattern.FindAllIndex(b, -1) {
			spans = append(spans, [2]int{m[0], m[1]})
		}
	}
	for _, e := range echoes {
		for off := 0; ; {
			i := bytes.Index(b[off:], e)
			if i < 0 {
				break
			}
			spans = append(spans, [2]int{off + i, off + i + len(e)})
			off += i + len(e)
		}
	}
	if len(echoes) == 0 || len(spans) < 2 {
		return spans
	}
	// Echoes were appended after the matches: sort and merge.
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	merged := spans[:1]
	for _, s := range spans[1:] {
		last := &merged[len(merged)-1]
		if s[0] <= last[1] {
			last[1] = max(last[1], s[1])
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// MaskSecrets returns b with every credential-looking value (see
// secretPattern) and every echo replaced by [REDACTED]. It returns b itself
// when there is nothing to mask.
func MaskSecrets(b []byte, echoes Echoes) []byte {
	spans := secretSpans(b, echoes)
	if len(spans) == 0 {
		return b
	}
	return maskSpans(b, spans)
}

func maskSpans(b []byte, spans [][2]int) []byte {
	out := make([]byte, 0, len(b))
	last := 0
	for _, s := range spans {
		out = append(out, b[last:s[0]]...)
		out = append(out, Redacted...)
		last = s[1]
	}
	return append(out, b[last:]...)
}

// MaskSecretsString is MaskSecrets for text such as an error message.
func MaskSecretsString(s string, echoes Echoes) string {
	if len(echoes) == 0 && !mayHoldSecret([]byte(s)) {
		return s
	}
	return string(MaskSecrets([]byte(s), echoes))
}
