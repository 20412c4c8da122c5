package compare

import (
	"strings"
	"unicode/utf8"
)

// IDPlaceholder replaces identifier segments in a normalized route.
const IDPlaceholder = "{id}"

// MaxRouteLen bounds a normalized route, in bytes: routes are a grouping
// key in ClickHouse, and an unbounded client-chosen path must not be one.
const MaxRouteLen = 256

// MinHexIDLen is the shortest all-hex segment taken for an identifier:
// shorter hex-looking words ("cafe", "deadbeef", "feed") are too often
// real path names, while hashes and object ids (MongoDB: 24, SHA-1: 40)
// are longer.
const MinHexIDLen = 16

// NormalizeRoute turns a request path into a low-cardinality route for
// grouping: segments that are all decimal digits, UUIDs (8-4-4-4-12 hex
// digits, any case), or at least MinHexIDLen hex digits become "{id}";
// other segments are kept as they are (still percent-encoded, if they
// were). A query or fragment is dropped, a missing leading slash added,
// trailing slashes removed (except for the root "/"), and a route longer
// than MaxRouteLen is cut at a character boundary and ends in "...".
//
// Other high-cardinality segments (slugs, e-mail addresses, base64 tokens)
// are kept; callers that need them grouped must map routes themselves.
func NormalizeRoute(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimRight(path, "/")
	if path == "" {
		return "/"
	}
	var b strings.Builder
	b.Grow(len(path) + 1)
	if path[0] != '/' {
		b.WriteByte('/')
	}
	for i := 0; i < len(path); {
		if path[i] == '/' {
			b.WriteByte('/')
			i++
			continue
		}
		j := strings.IndexByte(path[i:], '/')
		if j < 0 {
			j = len(path)
		} else {
			j += i
		}
		if seg := path[i:j]; isID(seg) {
			b.WriteString(IDPlaceholder)
		} else {
			b.WriteString(seg)
		}
		i = j
		if b.Len() > MaxRouteLen {
			break
		}
	}
	route := b.String()
	if len(route) > MaxRouteLen {
		cut := route[:MaxRouteLen-3]
		// Drop a rune split by the cut (at most UTFMax-1 bytes of it).
		for k := 0; k < utf8.UTFMax-1; k++ {
			if r, size := utf8.DecodeLastRuneInString(cut); r != utf8.RuneError || size != 1 {
				break
			}
			cut = cut[:len(cut)-1]
		}
		route = cut + "..."
	}
	return route
}

func isID(seg string) bool {
	if seg == "" {
		return false
	}
	digits, hex := true, true
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !isDigit(c) {
			digits = false
		}
		if !isHex(c) {
			hex = false
		}
	}
	return digits || (hex && len(seg) >= MinHexIDLen) || isUUID(seg)
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}
