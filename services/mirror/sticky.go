package mirror

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// stickyKey is a launch's sticky_key, parsed once per launch revision, with
// lookups that do not allocate for the usual request shapes. Whatever the
// path taken, value returns exactly what launch.StickyKey.Value returns: a
// user is placed in the same bucket by the tap and by anyone computing the
// sample with launch.UserBucket (tests, reports).
type stickyKey struct {
	launch.StickyKey
	set bool
	// cookieToken: the name is an HTTP token; net/http ignores cookies
	// whose name is not, so such a key never has a value.
	cookieToken bool
}

func parseSticky(s string) (stickyKey, error) {
	k, err := launch.ParseStickyKey(s)
	if err != nil || s == "" {
		return stickyKey{}, err
	}
	return stickyKey{StickyKey: k, set: true, cookieToken: isToken(k.Name)}, nil
}

// fastLimit bounds the cookies or query parameters the fast paths scan; past
// it they defer to net/http and net/url, whose own limits (3000 cookies,
// 10000 parameters by default, GODEBUG-tunable) then apply as usual.
const fastLimit = 1000

// value returns the request's value for the key, and whether it has one.
func (k *stickyKey) value(r *http.Request) (string, bool) {
	switch k.Source {
	case launch.StickyHeader:
		// The name is canonical (ParseStickyKey), as Header.Get would make it.
		if v := r.Header[k.Name]; len(v) > 0 && v[0] != "" {
			return v[0], true
		}
		return "", false
	case launch.StickyCookie:
		if v, ok, done := cookieValue(r.Header["Cookie"], k.Name, k.cookieToken); done {
			return v, ok
		}
	case launch.StickyQuery:
		if v, ok, done := queryValue(r.URL.RawQuery, k.Name); done {
			return v, ok
		}
	}
	return k.StickyKey.Value(r)
}

// cookieValue does what (*http.Request).Cookie does for one name, without
// allocating: the first cookie of that name whose value is valid wins.
// done is false when the header is too long to scan here.
func cookieValue(lines []string, name string, token bool) (v string, ok, done bool) {
	if len(lines) == 0 || !token {
		return "", false, true
	}
	n := 0
	for _, line := range lines {
		n += strings.Count(line, ";") + 1
	}
	if n > fastLimit {
		return "", false, false
	}
	for _, line := range lines {
		line = trimSpace(line)
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = trimSpace(part)
			if part == "" {
				continue
			}
			k, val, _ := strings.Cut(part, "=")
			if trimSpace(k) != name {
				continue
			}
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if !validCookieValue(val) {
				continue
			}
			return val, val != "", true
		}
	}
	return "", false, true
}

// queryValue does what r.URL.Query().Get(name) does, without allocating
// unless the value is escaped. done is false when a key before the match is
// escaped (it might unescape to name) or the query is too long to scan here.
func queryValue(raw, name string) (v string, ok, done bool) {
	if strings.Count(raw, "&") >= fastLimit {
		return "", false, false
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		// url.ParseQuery skips pairs with a semicolon, and empty ones.
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, val, _ := strings.Cut(pair, "=")
		if escaped(k) {
			return "", false, false
		}
		if k != name {
			continue
		}
		if escaped(val) {
			u, err := url.QueryUnescape(val)
			if err != nil {
				continue // skipped by url.ParseQuery too
			}
			val = u
		}
		return val, val != "", true
	}
	return "", false, true
}

// escaped reports whether a query key or value needs unescaping.
func escaped(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' || s[i] == '+' {
			return true
		}
	}
	return false
}

// trimSpace is textproto.TrimString: ASCII space only.
func trimSpace(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// validCookieValue is net/http's validCookieValueByte over a value.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 7230 token (a valid cookie name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0:
		default:
			return false
		}
	}
	return true
}
