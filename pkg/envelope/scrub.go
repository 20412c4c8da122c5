package envelope

import (
	"regexp"
	"strings"
)

// urlInText finds absolute URLs in free text (an error message): a scheme,
// "://", then everything up to a space, a quote or an angle bracket.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\s"'<>` + "`" + `]+`)

// ScrubError returns an error message fit to be stored: every URL in it
// loses its query string, fragment and userinfo (an access_token in a
// query, a password in user:pass@), which are replaced by "?[REDACTED]",
// "#[REDACTED]" and "[REDACTED]@". Go's HTTP client puts the whole
// request URL in its errors (Get "http://h/p?access_token=...": ...).
func ScrubError(msg string) string {
	if !strings.Contains(msg, "://") {
		return msg
	}
	return urlInText.ReplaceAllStringFunc(msg, scrubURL)
}

func scrubURL(s string) string {
	scheme, rest, _ := strings.Cut(s, "://")
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = "[REDACTED]@" + authority[i+1:]
	}
	if i := strings.IndexAny(tail, "?#"); i >= 0 {
		mark := tail[i]
		tail = tail[:i] + string(mark) + "[REDACTED]"
	}
	return scheme + "://" + authority + tail
}
