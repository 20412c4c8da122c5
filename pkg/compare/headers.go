package compare

import (
	"mime"
	"net/http"
	"slices"
	"strings"
)

// How a header's values are compared.
type headerMode uint8

const (
	hSkip        headerMode = iota
	hExact                  // the field values joined with ", ", each trimmed
	hMediaType              // MediaType of the first value
	hList                   // comma-separated tokens, case-insensitive, in order
	hSet                    // comma-separated tokens, case-insensitive, any order, duplicates once
	hPresence               // present on both sides or on neither
	hDirectives             // ";"-separated directives, case-insensitive, any order
	hContentType            // media type and parameters: names and charset case-insensitive, any order
	hCSP                    // Content-Security-Policy: directives in any order, each one's sources in any order, nonces as one
)

// SecurityHeaders are the response headers the rule security_headers adds
// to the compared ones, with how their values are compared; without it
// they are compared only when compare_headers names them (then the same
// way). The map documents them; changing it changes nothing.
var SecurityHeaders = map[string]string{
	"X-Content-Type-Options":    "tokens, case-insensitive, in order",
	"Strict-Transport-Security": "directives, case-insensitive, any order",
	"Content-Security-Policy":   "directives in any order, each directive's sources in any order, 'nonce-...' sources equal whatever their value",
}

var securityHeaderModes = map[string]headerMode{
	"X-Content-Type-Options":    hList,
	"Strict-Transport-Security": hDirectives,
	"Content-Security-Policy":   hCSP,
}

// DefaultCompareHeaders are the response headers compared unless ignored,
// with how their values are compared (canonical names as keys). They are
// the ones an API consumer's behaviour depends on. The map documents the
// defaults; changing it changes nothing.
var DefaultCompareHeaders = map[string]string{
	"Content-Type":                     "media type only (parameters such as charset are ignored)",
	"Content-Encoding":                 "tokens, case-insensitive, in order",
	"Content-Language":                 "tokens, case-insensitive, any order",
	"Content-Disposition":              "exact",
	"Content-Range":                    "exact",
	"Cache-Control":                    "directives, case-insensitive, any order",
	"Vary":                             "tokens, case-insensitive, any order",
	"Location":                         "exact",
	"Allow":                            "tokens, case-insensitive, any order",
	"Retry-After":                      "exact",
	"Www-Authenticate":                 "exact",
	"Access-Control-Allow-Origin":      "exact",
	"Access-Control-Allow-Credentials": "tokens, case-insensitive, in order",
	"Access-Control-Allow-Methods":     "tokens, case-insensitive, any order",
	"Access-Control-Allow-Headers":     "tokens, case-insensitive, any order",
	"Access-Control-Expose-Headers":    "tokens, case-insensitive, any order",
	"Access-Control-Max-Age":           "exact",
	"Etag":                             "presence only (values differ between instances even for equal content)",
}

var defaultHeaderModes = map[string]headerMode{
	"Content-Type":                     hMediaType,
	"Content-Encoding":                 hList,
	"Content-Language":                 hSet,
	"Content-Disposition":              hExact,
	"Content-Range":                    hExact,
	"Cache-Control":                    hSet,
	"Vary":                             hSet,
	"Location":                         hExact,
	"Allow":                            hSet,
	"Retry-After":                      hExact,
	"Www-Authenticate":                 hExact,
	"Access-Control-Allow-Origin":      hExact,
	"Access-Control-Allow-Credentials": hList,
	"Access-Control-Allow-Methods":     hSet,
	"Access-Control-Allow-Headers":     hSet,
	"Access-Control-Expose-Headers":    hSet,
	"Access-Control-Max-Age":           hExact,
	"Etag":                             hPresence,
}

// DefaultVolatileHeaders differ between two correct responses (times,
// request and trace ids, per-instance details, framing) and are not
// compared even under compare_headers "*" or a prefix, unless named there
// exactly. Names ending in "-" are prefixes. The list is read once, at
// package initialization.
var DefaultVolatileHeaders = []string{
	"Age", "Alt-Svc", "B3", "Baggage", "Cf-Ray", "Connection", "Content-Length", "Date", "Expires",
	"Keep-Alive", "Last-Modified", "Nel", "Report-To", "Server", "Server-Timing", "Set-Cookie",
	"Traceparent", "Tracestate", "Transfer-Encoding", "Via", "X-Amzn-Requestid", "X-Amzn-Trace-Id",
	"X-B3-", "X-Cache", "X-Cache-Hits", "X-Cloud-Trace-Context", "X-Correlation-Id", "X-Envoy-",
	"X-Powered-By", "X-Request-Id", "X-Response-Time", "X-Runtime", "X-Served-By", "X-Span-Id",
	"X-Timer", "X-Trace-Id",
}

var volatile = func() nameList {
	var l nameList
	for _, n := range DefaultVolatileHeaders {
		if strings.HasSuffix(n, "-") {
			n += "*"
		}
		if err := l.add(n, false); err != nil {
			panic(err)
		}
	}
	return l
}()

type headerRules struct {
	ignore, compare nameList
	// contentTypeParams compares Content-Type's parameters (charset ...)
	// besides its media type: the rule content_type_params.
	contentTypeParams bool
	// security compares SecurityHeaders: the rule security_headers.
	security bool
}

// mode decides how a header (canonical name) is compared: a user's
// ignore_headers wins, then a name listed exactly in compare_headers, then
// the volatile defaults, then the compared defaults, then compare_headers
// patterns.
func (h *headerRules) mode(canon string) headerMode {
	if in, _ := h.ignore.has(canon); in {
		return hSkip
	}
	if canon == "Content-Type" && h.contentTypeParams {
		return hContentType
	}
	in, named := h.compare.has(canon)
	if m, ok := securityHeaderModes[canon]; ok && (named || h.security) {
		return m
	}
	if named {
		if m, ok := defaultHeaderModes[canon]; ok {
			return m
		}
		return hExact
	}
	if v, _ := volatile.has(canon); v {
		return hSkip
	}
	if m, ok := defaultHeaderModes[canon]; ok {
		return m
	}
	if in {
		return hExact
	}
	return hSkip
}

// values returns a header's field values, whatever the case of its key.
func values(h http.Header, canon string) []string {
	if v, ok := h[canon]; ok {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, canon) {
			return v
		}
	}
	return nil
}

func headerEqual(mode headerMode, a, b []string) bool {
	switch mode {
	case hPresence:
		return (len(a) > 0) == (len(b) > 0)
	case hMediaType:
		return MediaType(first(a)) == MediaType(first(b))
	case hList, hSet:
		ta, tb := tokens(a, mode == hSet), tokens(b, mode == hSet)
		return slices.Equal(ta, tb)
	case hContentType:
		return contentTypeEqual(first(a), first(b))
	case hDirectives:
		return slices.Equal(directives(a, false), directives(b, false))
	case hCSP:
		return slices.Equal(directives(a, true), directives(b, true))
	}
	if len(a) == 1 && len(b) == 1 {
		return strings.TrimSpace(a[0]) == strings.TrimSpace(b[0])
	}
	return joined(a) == joined(b)
}

// contentTypeEqual compares two Content-Type values by media type and
// parameters: parameter names and the charset's value case-insensitively,
// other values exactly, in any order. Values that do not parse are
// compared as lower-cased text without spaces.
func contentTypeEqual(a, b string) bool {
	ma, pa, errA := mime.ParseMediaType(a)
	mb, pb, errB := mime.ParseMediaType(b)
	if errA != nil || errB != nil {
		norm := func(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), "")) }
		return norm(a) == norm(b)
	}
	if ma != mb || len(pa) != len(pb) {
		return false
	}
	for k, va := range pa {
		vb, ok := pb[k]
		if !ok || va != vb && !(k == "charset" && strings.EqualFold(va, vb)) {
			return false
		}
	}
	return true
}

// directives splits ";"-separated directives (Strict-Transport-Security,
// Content-Security-Policy), each lower-cased with its spaces collapsed,
// sorted, duplicates once. With csp, a directive's sources are sorted too
// and every 'nonce-...' source is one 'nonce' (a nonce is new in every
// response); source values keep their case.
func directives(v []string, csp bool) []string {
	var out []string
	for _, s := range v {
		for part := range strings.SplitSeq(s, ";") {
			f := strings.Fields(part)
			if len(f) == 0 {
				continue
			}
			f[0] = strings.ToLower(f[0])
			if !csp {
				out = append(out, strings.ToLower(strings.Join(f, " ")))
				continue
			}
			src := f[1:]
			for i, x := range src {
				if len(x) > 7 && strings.EqualFold(x[:7], "'nonce-") {
					src[i] = "'nonce'"
				} else if strings.HasPrefix(x, "'") {
					src[i] = strings.ToLower(x) // keywords: 'self', 'none', 'unsafe-inline'
				}
			}
			slices.Sort(src)
			out = append(out, f[0]+" "+strings.Join(slices.Compact(src), " "))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func joined(v []string) string {
	parts := make([]string, 0, len(v))
	for _, s := range v {
		parts = append(parts, strings.TrimSpace(s))
	}
	return strings.Join(parts, ", ")
}

// tokens splits comma-separated field values into lower-cased tokens,
// dropping empty ones; sorted and de-duplicated when set.
func tokens(v []string, set bool) []string {
	var out []string
	for _, s := range v {
		for part := range strings.SplitSeq(s, ",") {
			if t := strings.ToLower(strings.TrimSpace(part)); t != "" {
				out = append(out, t)
			}
		}
	}
	if set {
		slices.Sort(out)
		out = slices.Compact(out)
	}
	return out
}

// compareHeaders compares the headers the rules select, Content-Type first
// (it also decides ContentTypeMatch), then the others by name.
func (s *state) compareHeaders(h *headerRules, p, sh http.Header) (ctMatch, allMatch bool) {
	ctMatch, allMatch = true, true
	if m := h.mode("Content-Type"); m != hSkip {
		pv, sv := values(p, "Content-Type"), values(sh, "Content-Type")
		if !headerEqual(m, pv, sv) {
			// ContentTypeMatch is about the media type alone, also when
			// the parameters are compared.
			ctMatch, allMatch = m == hContentType && headerEqual(hMediaType, pv, sv), false
			s.add(PathContentType, PathContentType, KindHeader)
		}
	}
	var buf [24]string
	names := buf[:0]
	for _, hdr := range [2]http.Header{p, sh} {
		for k := range hdr {
			c := http.CanonicalHeaderKey(k)
			if c != "Content-Type" && h.mode(c) != hSkip {
				names = append(names, c)
			}
		}
	}
	if len(names) == 0 {
		return ctMatch, allMatch
	}
	slices.Sort(names)
	names = slices.Compact(names)
	for _, n := range names {
		if !headerEqual(h.mode(n), values(p, n), values(sh, n)) {
			allMatch = false
			path := "header." + n
			s.add(path, path, KindHeader)
		}
	}
	return ctMatch, allMatch
}
