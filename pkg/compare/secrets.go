package compare

import (
	"bytes"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

// detector finds one kind of credential: every occurrence of hint is a
// candidate; the match, if any, starts back bytes before it (a word start
// there, when word is set) and is re, anchored, within span bytes.
// Looking only where a hint is keeps the cost linear and small: one
// regular expression over a whole body with every alternative is far
// slower (milliseconds for 64 KiB with one match).
type detector struct {
	hint []byte
	back int
	word bool
	span int
	re   *regexp.Regexp
}

const (
	tokenSpan = 4 << 10  // a token: JWTs run to a few KiB
	pemSpan   = 16 << 10 // a PEM private key block
)

// detectors match values that are credentials whatever key or line holds
// them: JWTs (and a JWT's header.payload when cut short), AWS access key
// ids, GCP API keys and OAuth tokens, Azure storage account keys and SAS
// signatures, Bearer and Basic credentials, PEM private keys (also with
// JSON-escaped line breaks, and cut short), and the API keys of common
// services (sk_live_..., GitHub, GitLab, Slack, npm, SendGrid, OpenAI). No
// pattern matches a quote or a backslash that is not part of an escape,
// so masking inside a JSON string keeps the JSON valid.
var detectors = func() []detector {
	var ds []detector
	add := func(hints []string, back int, word bool, span int, re string) {
		r := regexp.MustCompile(`^(?:` + re + `)`)
		for _, h := range hints {
			ds = append(ds, detector{hint: []byte(h), back: back, word: word, span: span, re: r})
		}
	}
	add([]string{"eyJ"}, 0, false, tokenSpan, `eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)?`)
	add([]string{"AKIA", "ASIA", "ABIA", "ACCA"}, 0, false, 64, `[A-Z]{4}[A-Z0-9]{16}`)
	add([]string{"AIza"}, 0, false, 64, `AIza[0-9A-Za-z_-]{35}`)
	add([]string{"ya29."}, 0, false, tokenSpan, `ya29\.[0-9A-Za-z_-]{20,}`)
	add([]string{"1//0"}, 0, false, tokenSpan, `1//0[0-9A-Za-z_-]{30,}`)
	add([]string{"ccountKey=", "ccountkey=", "CCOUNTKEY="}, 1, false, 256, `(?i:AccountKey)=[A-Za-z0-9+/]{40,}={0,2}`)
	add([]string{"sig="}, 0, false, tokenSpan, `sig=[A-Za-z0-9%+/]{20,}={0,2}`)
	add([]string{"earer", "EARER"}, 1, true, tokenSpan, `(?i:bearer)\s+[A-Za-z0-9._~+/-]{8,}={0,2}`)
	add([]string{"asic ", "ASIC "}, 1, true, tokenSpan, `(?i:basic)\s+[A-Za-z0-9._~+/-]{8,}={0,2}`)
	add([]string{"-----BEGIN"}, 0, false, pemSpan, `-----BEGIN[A-Z ]*PRIVATE KEY-----(?:(?:[A-Za-z0-9+/= \t\r\n:,.-]|\\[nrt])*?-----END[A-Z ]*PRIVATE KEY-----|(?:[A-Za-z0-9+/=\r\n:,.]|\\[nrt])*)`)
	add([]string{"k_live_", "k_test_"}, 1, true, tokenSpan, `[sr]k_(?:live|test)_[0-9A-Za-z]{10,}`)
	add([]string{"whsec_"}, 0, true, tokenSpan, `whsec_[0-9A-Za-z]{20,}`)
	add([]string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, 0, true, tokenSpan, `gh[pousr]_[A-Za-z0-9]{30,}`)
	add([]string{"github_pat_"}, 0, true, tokenSpan, `github_pat_[A-Za-z0-9_]{40,}`)
	add([]string{"glpat-"}, 0, true, tokenSpan, `glpat-[A-Za-z0-9_-]{20,}`)
	add([]string{"xox"}, 0, true, tokenSpan, `xox[abposr]-[A-Za-z0-9-]{10,}`)
	add([]string{"npm_"}, 0, true, 64, `npm_[A-Za-z0-9]{36}`)
	add([]string{"SG."}, 0, true, tokenSpan, `SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}`)
	add([]string{"sk-"}, 0, true, tokenSpan, `sk-(?:proj-)?[A-Za-z0-9_-]{32,}`)
	return ds
}()

// find appends the [start, end) of each of d's matches in b to spans.
func (d *detector) find(b []byte, spans [][2]int) [][2]int {
	for off := 0; off < len(b); {
		i := bytes.Index(b[off:], d.hint)
		if i < 0 {
			break
		}
		pos := off + i
		off = pos + 1
		start := pos - d.back
		if start < 0 || (d.word && start > 0 && isWordByte(b[start-1])) {
			continue
		}
		if m := d.re.FindIndex(b[start:min(len(b), start+d.span)]); m != nil {
			spans = append(spans, [2]int{start, start + m[1]})
			off = start + m[1]
		}
	}
	return spans
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
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
// the detectors' matches and the echoes, in order, merged where they
// overlap; nil when there are none.
func secretSpans(b []byte, echoes Echoes) [][2]int {
	var spans [][2]int
	for i := range detectors {
		spans = detectors[i].find(b, spans)
	}
	return mergeSpans(echoSpans(b, echoes, spans))
}

// echoSpans appends the spans of every occurrence of each echo in b.
func echoSpans(b []byte, echoes Echoes, spans [][2]int) [][2]int {
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
	return spans
}

// mergeSpans sorts spans and merges those that overlap. Each detector's
// matches are in order, not the whole.
func mergeSpans(spans [][2]int) [][2]int {
	if len(spans) < 2 {
		return spans
	}
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
// detectors) and every echo replaced by [REDACTED]. It returns b itself
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
	b := []byte(s)
	if m := MaskSecrets(b, echoes); len(s) > 0 && (len(m) != len(b) || &m[0] != &b[0]) {
		return string(m)
	}
	return s
}

// HeaderEchoes is RequestEchoes for the headers in names only (canonical
// names): the credential values a tap seals or leaves out of an envelope.
// Cookie, Authorization, Proxy-Authorization and X-Api-Key are read as
// RequestEchoes reads them; any other header in names gives its whole
// value, under the same rules (8 bytes or more, safe characters). It
// returns nil when h holds none of them, without allocating.
func HeaderEchoes(h http.Header, names []string) Echoes {
	var out Echoes
	for _, name := range names {
		vs := h[name]
		if len(vs) == 0 {
			continue
		}
		switch name {
		case "Cookie", "Authorization", "Proxy-Authorization", "X-Api-Key":
			out = append(out, RequestEchoes(http.Header{name: vs})...)
		default:
			for _, v := range vs {
				if v = strings.TrimSpace(v); len(v) >= minEcho && echoSafe(v) {
					out = append(out, []byte(v))
				}
			}
		}
	}
	return out
}

// MaskEchoes returns b with every occurrence of an echo replaced by
// Redacted, and nothing else changed (unlike MaskSecrets, no detector
// runs). It returns b itself when there is nothing to mask. The tap and
// the runner mask echoed credentials with it at capture, so the primary's
// and the shadow's bodies carry the same deterministic token.
func MaskEchoes(b []byte, echoes Echoes) []byte {
	if len(echoes) == 0 || len(b) == 0 {
		return b
	}
	spans := echoSpans(b, echoes, nil)
	if len(spans) == 0 {
		return b
	}
	return maskSpans(b, mergeSpans(spans))
}

// MaskEchoesHeader returns h with every echo masked in the values of the
// headers not in skip (canonical names: the sealed ones, which hold
// ciphertext). h is returned itself when nothing changes, otherwise a
// copy: h may be shared.
func MaskEchoesHeader(h http.Header, echoes Echoes, skip []string) http.Header {
	if len(echoes) == 0 {
		return h
	}
	var out http.Header
	for k, vs := range h {
		if slices.Contains(skip, k) {
			continue
		}
		for i, v := range vs {
			m := MaskEchoes([]byte(v), echoes)
			if len(m) == len(v) && string(m) == v {
				continue
			}
			if out == nil {
				out = h.Clone()
			}
			out[k][i] = string(m)
		}
	}
	if out == nil {
		return h
	}
	return out
}

// MaskEchoesResponse replaces, in r's body and in its header values other
// than those in skip (canonical names: the sealed ones), every occurrence
// of an echo with Redacted. The tap does it to the primary's response with
// the request's clear credentials before sealing them, the shadow-runner
// to the shadow's and the secondary's with the opened ones: an echoed
// credential then compares equal on both sides and is stored in clear
// nowhere. A body with a Content-Encoding is left as it is (the clear
// value cannot be found in it). When the body is whole, BodySize becomes
// its masked length. r's body and headers are replaced, never modified in
// place: they may be shared.
func MaskEchoesResponse(r *envelope.Response, echoes Echoes, skip []string) {
	if len(echoes) == 0 || r == nil {
		return
	}
	if ce := r.Headers.Get("Content-Encoding"); ce == "" || strings.EqualFold(ce, "identity") {
		if b := MaskEchoes(r.Body, echoes); len(b) != len(r.Body) || (len(b) > 0 && &b[0] != &r.Body[0]) {
			r.Body = b
			if !r.BodyTruncated {
				r.BodySize = int64(len(b))
			}
		}
	}
	r.Headers = MaskEchoesHeader(r.Headers, echoes, skip)
}
