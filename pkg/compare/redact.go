package compare

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

// Redacted replaces every masked header value, JSON value and form value.
const Redacted = "[REDACTED]"

// RedactionHeader is added to a redacted response or request when its body
// had to be changed beyond masking (decoded, or dropped because it could
// not be checked); its value says what was done.
const RedactionHeader = "Darklaunch-Redaction"

// DefaultRedactHeaders are always masked by Redact, besides any header
// whose name, lower-cased without "-" and "_", ends with one of
// redactSuffixes (X-Auth-Token, X-Csrf-Token, X-Upstream-Secret ...).
var DefaultRedactHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"}

// DefaultRedactKeys are JSON keys and form fields always masked by Redact,
// compared lower-cased without "-" and "_" (so accessToken and access-token
// are access_token), besides any key that ends with one of redactSuffixes
// in that form (db_password, id_token, stripe_secret ...).
var DefaultRedactKeys = []string{"password", "passwd", "secret", "token", "access_token", "refresh_token",
	"api_key", "apikey", "authorization", "client_secret", "private_key", "credentials", "cookie", "set_cookie"}

var redactSuffixes = []string{"password", "passwd", "secret", "token", "apikey", "authorization"}

var defaultRedactKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range DefaultRedactKeys {
		m[normKey(k)] = true
	}
	return m
}()

var defaultRedactHeaders = func() map[string]bool {
	m := map[string]bool{}
	for _, h := range DefaultRedactHeaders {
		m[http.CanonicalHeaderKey(h)] = true
	}
	return m
}()

// normKey lower-cases a key and drops "-" and "_".
func normKey(k string) string {
	k = strings.ToLower(k)
	if strings.ContainsAny(k, "-_") {
		k = strings.NewReplacer("-", "", "_", "").Replace(k)
	}
	return k
}

func hasSensitiveSuffix(n string) bool {
	for _, s := range redactSuffixes {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return false
}

func (rs *Ruleset) sensitiveKey(name string) bool {
	n := normKey(name)
	return defaultRedactKeys[n] || rs.redactKeys[n] || hasSensitiveSuffix(n)
}

// sensitiveName is sensitiveKey for a JSON member name as it is in the
// source, without quotes.
func (rs *Ruleset) sensitiveName(raw []byte, esc bool) bool {
	if esc {
		return rs.sensitiveKey(unescape(raw))
	}
	return rs.sensitiveKey(string(raw))
}

func (rs *Ruleset) sensitiveHeader(canon string) bool {
	if defaultRedactHeaders[canon] {
		return true
	}
	if in, _ := rs.redactHeaders.has(canon); in {
		return true
	}
	return hasSensitiveSuffix(normKey(canon))
}

// Redact returns a copy of r that is safe to store: sensitive headers and
// the values of sensitive JSON keys and form fields are masked as
// Redacted (see DefaultRedactHeaders, DefaultRedactKeys and the rules'
// RedactHeaders and RedactKeys); then, by value, whatever key holds them,
// credential-looking values (JWTs, cloud access keys, Bearer tokens,
// private keys, API keys: MaskSecrets) and the request's own credentials
// echoed back (echoes, see RequestEchoes) in the other header values and
// in the body.
//
// The body is first decoded from its Content-Encoding (the header is then
// removed). A JSON body (by its Content-Type) is rewritten with every
// sensitive member's value, whatever its type, replaced by "[REDACTED]",
// at any depth, the rest kept byte for byte; a truncated one is redacted
// as far as it goes. A form-urlencoded body has the values of sensitive
// fields replaced. A body of another type that looks like JSON (starts
// with "{" or "[") and parses is redacted as JSON too; other bodies are
// kept as they are. A body that cannot be checked (undecodable, or claimed
// JSON that does not parse) is dropped: Body is nil, BodyTruncated is
// set, and RedactionHeader says why. The original is never modified.
func Redact(r *envelope.Response, rules *Ruleset, echoes Echoes) envelope.Response {
	if r == nil {
		return envelope.Response{}
	}
	out := *r
	out.Headers, out.Body, out.BodySize, out.BodyTruncated = redactMessage(r.Headers, r.Body, r.BodySize, r.BodyTruncated, orDefault(rules), echoes)
	return out
}

// RedactRequest is Redact for a request; it also masks the values of
// sensitive parameters of the query string, and credential-looking values
// in it.
func RedactRequest(r *envelope.Request, rules *Ruleset) envelope.Request {
	if r == nil {
		return envelope.Request{}
	}
	rs := orDefault(rules)
	out := *r
	out.Headers, out.Body, out.BodySize, out.BodyTruncated = redactMessage(r.Headers, r.Body, r.BodySize, r.BodyTruncated, rs, nil)
	if r.RawQuery != "" {
		out.RawQuery = string(MaskSecrets(redactForm([]byte(r.RawQuery), rs), nil))
	}
	return out
}

// redactMessage redacts what requests and responses have in common: a
// copy of the headers, masked, and the body (see redactBody); echoes are
// masked in both.
func redactMessage(h http.Header, raw []byte, size int64, truncated bool, rs *Ruleset, echoes Echoes) (http.Header, []byte, int64, bool) {
	h = redactHeaders(h, rs, echoes)
	body, size, truncated := redactBody(h, raw, size, truncated, rs, echoes)
	return h, body, size, truncated
}

func redactHeaders(h http.Header, rs *Ruleset, echoes Echoes) http.Header {
	if h == nil {
		return nil
	}
	out := make(http.Header, len(h))
	for k, vs := range h {
		if rs.sensitiveHeader(http.CanonicalHeaderKey(k)) {
			masked := make([]string, len(vs))
			for i := range masked {
				masked[i] = Redacted
			}
			out[k] = masked
			continue
		}
		kept := make([]string, len(vs))
		for i, v := range vs {
			kept[i] = MaskSecretsString(v, echoes)
		}
		out[k] = kept
	}
	return out
}

// redactBody redacts a body; h is the (copied) header map, updated when
// the body is decoded or dropped.
func redactBody(h http.Header, raw []byte, size int64, truncated bool, rs *Ruleset, echoes Echoes) ([]byte, int64, bool) {
	if len(raw) == 0 {
		return nil, size, truncated
	}
	drop := func(why string) ([]byte, int64, bool) {
		setHeader(h, RedactionHeader, "body dropped: "+why)
		return nil, size, true
	}
	b, codings, err := decodeBody(h, raw, truncated, size, DefaultMaxBodyBytes)
	if err != nil {
		return drop("could not decode " + codings + ": " + err.Error())
	}
	if codings != "" {
		delHeader(h, "Content-Encoding")
		setHeader(h, RedactionHeader, "body decoded from "+codings)
	}
	body := b.b
	mt := MediaType(first(values(h, "Content-Type")))
	switch {
	case IsJSONSeq(mt):
		red, err := redactSeq(body, b.truncated, rs)
		if err != nil {
			return drop("not a valid JSON sequence: " + err.Error())
		}
		body = red
	case IsJSON(mt):
		red, err := redactJSON(body, b.truncated, rs)
		if err != nil {
			return drop("not valid JSON: " + err.Error())
		}
		body = red
	case IsForm(mt):
		body = redactForm(body, rs)
	case looksLikeJSON(body):
		if red, err := redactJSON(body, b.truncated, rs); err == nil {
			body = red
		} else {
			body = bytes.Clone(body)
		}
	default:
		body = bytes.Clone(body)
	}
	body = MaskSecrets(body, echoes)
	if b.truncated {
		return body, b.size, true
	}
	return body, int64(len(body)), false
}

// redactSeq is redactJSON for each text of a sequence of JSON texts
// (NDJSON, JSON Lines, RFC 7464), the bytes between them kept; with prefix
// set, the last text may end early.
func redactSeq(src []byte, prefix bool, rs *Ruleset) ([]byte, error) {
	out := make([]byte, 0, len(src)+16)
	last := 0
	var err error
	seqRecords(src, func(start, end, line int) bool {
		out = append(out, src[last:start]...)
		lastRec := len(bytes.TrimRight(src[end:], " \t\r\n\x1e")) == 0
		red, e := redactJSON(src[start:end], prefix && lastRec, rs)
		if e != nil {
			err = fmt.Errorf("line %d: %w", line, e)
			return false
		}
		out = append(out, red...)
		last = end
		return true
	})
	if err != nil {
		return nil, err
	}
	return append(out, src[last:]...), nil
}

func looksLikeJSON(b []byte) bool {
	i := skipWS(b, 0)
	return i < len(b) && (b[i] == '{' || b[i] == '[')
}

func setHeader(h http.Header, k, v string) {
	if h != nil {
		h[k] = []string{v}
	}
}

func delHeader(h http.Header, canon string) {
	for k := range h {
		if strings.EqualFold(k, canon) {
			delete(h, k)
		}
	}
}

var redactedForm = url.QueryEscape(Redacted)

var redactedJSON = []byte(`"` + Redacted + `"`) // never written to

// redactForm masks the values of sensitive fields of a form-urlencoded
// body or query string, keeping everything else as it is. ";" separates
// fields too, as some servers read it so. A field whose name cannot be
// decoded is masked.
func redactForm(src []byte, rs *Ruleset) []byte {
	out := make([]byte, 0, len(src))
	for len(src) > 0 {
		end := bytes.IndexAny(src, "&;")
		if end < 0 {
			end = len(src)
		}
		part := src[:end]
		if k, _, ok := bytes.Cut(part, []byte("=")); ok {
			name, err := url.QueryUnescape(string(k))
			if err != nil || rs.sensitiveKey(name) {
				out = append(out, k...)
				out = append(out, '=')
				out = append(out, redactedForm...)
				part = nil
			}
		}
		out = append(out, part...)
		if end < len(src) {
			out = append(out, src[end])
			end++
		}
		src = src[end:]
	}
	return out
}

// redactJSON copies a JSON text, replacing the value of every member whose
// name is sensitive with "[REDACTED]". It validates the whole text as it
// goes; with prefix set, the text may end early (a truncated body): the
// output then ends early too, and never with part of a sensitive value.
func redactJSON(src []byte, prefix bool, rs *Ruleset) ([]byte, error) {
	if len(src) >= math.MaxInt32 {
		return nil, errTooLarge
	}
	out := make([]byte, 0, len(src)+16)
	var sc scanner
	sc.reset(src)
	last := 0 // src[last:] is still to be copied
	for {
		t, err := sc.next()
		if err != nil {
			// Of a sensitive value cut short, only the mask is kept.
			if ks, ke, esc, ok := sc.pendingName(); ok && rs.sensitiveName(src[ks:ke], esc) {
				if v := skipWS(src, sc.pos); v < len(src) {
					out = append(out, src[last:v]...)
					return cutShort(out, redactedJSON, err, prefix, len(src))
				}
			}
			return cutShort(out, src[last:], err, prefix, len(src))
		}
		if t.kind == tDone {
			return append(out, src[last:]...), nil
		}
		if t.kstart < 0 || !rs.sensitiveName(src[t.kstart:t.kend], t.kesc) {
			continue
		}
		out = append(out, src[last:t.start]...)
		out = append(out, redactedJSON...)
		last = int(t.end)
		if t.kind == tArray || t.kind == tObject {
			if last, err = sc.skip(); err != nil {
				return cutShort(out, nil, err, prefix, len(src))
			}
		}
	}
}

// cutShort ends redactJSON at err: a prefix that ended early is out and
// then tail, anything else an error (for a whole text, one that says where
// it ended, at n).
func cutShort(out, tail []byte, err error, prefix bool, n int) ([]byte, error) {
	if !errors.Is(err, errUnexpectedEOF) {
		return nil, err
	}
	if !prefix {
		return nil, &syntaxError{off: n, msg: "unexpected end of input", eof: true}
	}
	return append(out, tail...), nil
}
