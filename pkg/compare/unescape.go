package compare

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// Strings and member names are compared by value. The parser only records
// whether a literal holds escapes; decoding happens here, and only when
// two literals that differ in text might still be equal.

// unescape decodes the contents of a JSON string literal (without its
// quotes) that the parser validated. Bytes that are not valid UTF-8 are
// kept as they are, so that a string without escapes is its own value;
// escaped lone surrogates become U+FFFD, as in encoding/json.
func unescape(s []byte) string {
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s)
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			out = append(out, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if i+4 >= len(s) {
				out = append(out, s[i-1:]...)
				return string(out)
			}
			r := hex4(s[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if dec := utf16.DecodeRune(r, hex4(s[i+3:i+7])); dec != utf8.RuneError {
						r2 = dec
						i += 6
					}
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, s[i])
		}
	}
	return string(out)
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// strEqual compares two JSON string literals (with quotes) by value.
func strEqual(a []byte, aesc bool, b []byte, besc bool) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if !aesc && !besc {
		return false
	}
	return unescape(a[1:len(a)-1]) == unescape(b[1:len(b)-1])
}

// nameEqual compares two member names (without quotes) by value.
func nameEqual(a []byte, aesc bool, b []byte, besc bool) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if !aesc && !besc {
		return false
	}
	return unescape(a) == unescape(b)
}
