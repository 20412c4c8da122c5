package envelope

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 section 7.6.1); they are never replayed.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// EndToEnd returns h without its hop-by-hop headers, those named in its
// Connection header, and the names in drop, all matched without regard to
// case. The result is a new map (never nil) that shares h's value slices:
// replace a value, do not write into it. (A copy of every value cost the
// runner more than the rest of its header handling.)
func EndToEnd(h http.Header, drop ...string) http.Header {
	out := make(http.Header, len(h)+1)
	connection := h["Connection"]
	for k, v := range h {
		if foldIn(hopByHop, k) || foldIn(drop, k) || namedIn(connection, k) {
			continue
		}
		out[k] = v
	}
	return out
}

func foldIn(names []string, k string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, k) })
}

// namedIn reports whether the Connection header values name k.
func namedIn(connection []string, k string) bool {
	for _, v := range connection {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(textproto.TrimString(name), k) {
				return true
			}
		}
	}
	return false
}
