package compare

import (
	"bytes"
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
	rs := orDefault(rules)
	out := *r
	out.Headers = redactHeaders(r.Headers, rs, echoes)
	out.Body, out.BodySize, out.BodyTruncated = redactBody(out.Headers, r.Body, r.BodySize, r.BodyTruncated, rs, echoes)
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
	out.Headers = redactHeaders(r.Headers, rs, nil)
	if r.RawQuery != "" {
		out.RawQuery = string(MaskSecrets(redactForm([]byte(r.RawQuery), rs), nil))
	}
	out.Body, out.BodySize, out.BodyTruncated = redactBody(out.Headers, r.Body, r.BodySize, r.BodyTruncated, rs, nil)
	return out
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
	const (
		sValue = iota
		sValueOrEnd
		sKey
		sKeyOrEnd
		sAfter
	)
	out := make([]byte, 0, len(src)+16)
	var stack []byte
	state := sValue
	last := 0 // src[last:i] is still to be copied
	redactNext, skipping := false, false
	skipDepth := 0
	i := 0
	eof := func() ([]byte, error) {
		if !prefix {
			return nil, &syntaxError{len(src), "unexpected end of input"}
		}
		if !skipping {
			out = append(out, src[last:]...)
		}
		return out, nil
	}
	for {
		if state == sAfter && skipping && len(stack) == skipDepth {
			skipping, last = false, i
		}
		i = skipWS(src, i)
		if i >= len(src) {
			if state == sAfter && len(stack) == 0 {
				return append(out, src[last:]...), nil
			}
			return eof()
		}
		c := src[i]
		switch state {
		case sValue, sValueOrEnd:
			if state == sValueOrEnd && c == ']' {
				stack = stack[:len(stack)-1]
				i++
				state = sAfter
				continue
			}
			if redactNext {
				redactNext = false
				out = append(out, src[last:i]...)
				out = append(out, `"`+Redacted+`"`...)
				skipping, skipDepth = true, len(stack)
			}
			switch {
			case c == '{' || c == '[':
				stack = append(stack, c)
				i++
				state = sValueOrEnd
				if c == '{' {
					state = sKeyOrEnd
				}
				continue
			case c == '"':
				end, _, err := scanString(src, i)
				if err != nil {
					if isEOFError(err) {
						return eof()
					}
					return nil, err
				}
				i = end
			case c == '-' || (c >= '0' && c <= '9'):
				end, err := scanNumber(src, i)
				if err != nil {
					if se, ok := err.(*syntaxError); ok && se.off >= len(src) {
						return eof()
					}
					return nil, err
				}
				i = end
			default:
				lit := ""
				switch c {
				case 't':
					lit = "true"
				case 'f':
					lit = "false"
				case 'n':
					lit = "null"
				default:
					return nil, &syntaxError{i, "unexpected character"}
				}
				if len(src)-i < len(lit) && lit[:len(src)-i] == string(src[i:]) {
					return eof()
				}
				if len(src)-i < len(lit) || string(src[i:i+len(lit)]) != lit {
					return nil, &syntaxError{i, "invalid literal"}
				}
				i += len(lit)
			}
			state = sAfter
		case sKey, sKeyOrEnd:
			if state == sKeyOrEnd && c == '}' {
				stack = stack[:len(stack)-1]
				i++
				state = sAfter
				continue
			}
			if c != '"' {
				return nil, &syntaxError{i, "expected a member name"}
			}
			end, esc, err := scanString(src, i)
			if err != nil {
				if isEOFError(err) {
					return eof()
				}
				return nil, err
			}
			if !skipping {
				name := src[i+1 : end-1]
				if esc {
					redactNext = rs.sensitiveKey(unescape(name))
				} else {
					redactNext = rs.sensitiveKey(string(name))
				}
			}
			i = skipWS(src, end)
			if i >= len(src) {
				return eof()
			}
			if src[i] != ':' {
				return nil, &syntaxError{i, "expected ':' after a member name"}
			}
			i++
			state = sValue
		case sAfter:
			if len(stack) == 0 {
				return nil, &syntaxError{i, "data after the top-level value"}
			}
			top := stack[len(stack)-1]
			switch {
			case c == ',':
				i++
				state = sValue
				if top == '{' {
					state = sKey
				}
			case (c == '}' && top == '{') || (c == ']' && top == '['):
				stack = stack[:len(stack)-1]
				i++
			default:
				return nil, &syntaxError{i, "unexpected character after a value"}
			}
		}
	}
}

func isEOFError(err error) bool {
	se, ok := err.(*syntaxError)
	return ok && strings.Contains(se.msg, "end of input")
}
