package compare

import (
	"errors"
	"fmt"
)

// One JSON grammar (RFC 8259, strict) for the whole package: the parser
// (parse.go) builds its node slice from these tokens and redaction
// (redact.go) copies a body through them. A scanner validates as it goes
// (nesting, commas, colons, one top-level value, nothing after it) and
// returns spans of the source, never copies: it allocates only to grow its
// stack of open containers, which is reused across documents.

// Token kinds. The kinds of values are the node kinds, so that the parser
// stores them as they come.
const (
	tNull uint8 = iota
	tFalse
	tTrue
	tNumber
	tString
	tArray  // "[": the array's elements follow, then a tEnd
	tObject // "{": the members' values follow, each with its name, then a tEnd
	tEnd    // "]" or "}"
	tDone   // the end of the document, after its one value
)

// A token is a span of the source: start, end is a value's text (strings
// with their quotes), the one byte of a bracket, nothing for tDone. A
// member's value carries the member's name: kstart, kend is the name's
// text without its quotes, -1 for values that are not members. Names come
// with their values, not as tokens of their own, so that an object costs
// one call per member. Offsets are int32, as in the parser's nodes, which
// are tokens placed in a tree; callers refuse inputs of 2 GiB and more.
type token struct {
	kind         uint8
	esc          bool // a string value with escapes
	kesc         bool // a member name with escapes
	start, end   int32
	kstart, kend int32
}

// errUnexpectedEOF is matched (errors.Is) by every syntax error that is due
// to the input ending early: a longer input might still be valid. A body
// truncated by the tap fails this way, and redaction then keeps the prefix.
var errUnexpectedEOF = errors.New("unexpected end of input")

// syntaxError is the error of a scanner; off is the offset of the byte it
// is about (the length of the input when the input ended).
type syntaxError struct {
	off int
	msg string
	eof bool // the input ended before the document: see errUnexpectedEOF
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.off) }

// Unwrap makes errors.Is(err, errUnexpectedEOF) true for end-of-input errors.
func (e *syntaxError) Unwrap() error {
	if e.eof {
		return errUnexpectedEOF
	}
	return nil
}

// What a scanner expects next.
const (
	sValue      uint8 = iota // a value
	sValueOrEnd              // a value or "]", after "["
	sName                    // a member name, after "," in an object
	sNameOrEnd               // a member name or "}", after "{"
	sAfter                   // "," or a closing bracket, or the end after the top-level value
)

// scanner reads one JSON document as tokens, without recursion: nesting is
// bounded by memory only, so callers bound depth themselves.
type scanner struct {
	src   []byte
	pos   int    // where scanning resumes: past the last token, or member name, scanned
	stack []byte // the open containers, '[' or '{'
	state uint8
	tok   token // the last token returned, or the member that failed
}

// reset starts scanning src, keeping the stack's buffer.
func (s *scanner) reset(src []byte) {
	s.src, s.pos, s.stack, s.state = src, 0, s.stack[:0], sValue
}

// next returns the next token, tDone once the document is complete, or the
// first syntax error, after which the scanner is done. The token is the
// scanner's own (returned by pointer, as copying it costs more than
// scanning it) and valid until the next call. After an error, pos is still
// just past the last token returned, or past the colon of a member name
// whose value failed.
func (s *scanner) next() (*token, error) {
	src := s.src
	i := skipWS(src, s.pos)
	state := s.state
	t := &s.tok
	if state == sAfter {
		if len(s.stack) == 0 {
			if i != len(src) {
				return nil, &syntaxError{off: i, msg: "data after the top-level value"}
			}
			s.pos = i
			*t = token{kind: tDone, start: int32(i), end: int32(i), kstart: -1, kend: -1}
			return t, nil
		}
		if i >= len(src) {
			return nil, &syntaxError{off: i, msg: "unexpected end of input", eof: true}
		}
		top := s.stack[len(s.stack)-1]
		switch c := src[i]; {
		case c == ',':
			i = skipWS(src, i+1)
			state = sValue
			if top == '{' {
				state = sName
			}
		case c == top+2: // '[' + 2 is ']' and '{' + 2 is '}'
			return s.close(i), nil
		default:
			return nil, unexpected(i, c, " after a value")
		}
	}
	t.kstart, t.kend, t.kesc = -1, -1, false
	resume := 0 // for a member, the offset past its colon
	if state == sName || state == sNameOrEnd {
		// A member: its name and colon, then its value below.
		if i >= len(src) || src[i] != '"' {
			if state == sNameOrEnd && i < len(src) && src[i] == '}' {
				return s.close(i), nil
			}
			return nil, &syntaxError{off: i, msg: "expected a member name", eof: i >= len(src)}
		}
		end, esc := plainString(src, i), false
		if end < 0 {
			var err error
			if end, esc, err = scanString(src, i); err != nil {
				return nil, err
			}
		}
		j := skipWS(src, end)
		if j >= len(src) || src[j] != ':' {
			return nil, &syntaxError{off: j, msg: "expected ':' after a member name", eof: j >= len(src)}
		}
		t.kstart, t.kend, t.kesc = int32(i+1), int32(end-1), esc
		resume = j + 1
		i, state = skipWS(src, resume), sValue
	}
	var err error
	end := 0
	t.start, t.esc = int32(i), false
	if i >= len(src) {
		err = &syntaxError{off: i, msg: "unexpected end of input", eof: true}
	} else {
		switch c := src[i]; {
		case c == ']' && state == sValueOrEnd:
			return s.close(i), nil
		case c == '{' || c == '[':
			s.stack = append(s.stack, c)
			t.kind, t.end, s.state = tArray, int32(i+1), sValueOrEnd
			if c == '{' {
				t.kind, s.state = tObject, sNameOrEnd
			}
			s.pos = i + 1
			return t, nil
		case c == '"':
			t.kind = tString
			if end = plainString(src, i); end < 0 {
				end, t.esc, err = scanString(src, i)
			}
		case c == '-' || isDigit(c):
			t.kind = tNumber
			if end = plainInteger(src, i); end < 0 {
				end, err = scanNumber(src, i)
			}
		default:
			end, err = s.literal(i)
		}
	}
	if err != nil {
		if t.kstart >= 0 {
			// The member's name was scanned: it stays pending (see
			// pendingName) and scanning would resume after its colon.
			s.pos, s.state = resume, sValue
		}
		return nil, err
	}
	t.end = int32(end)
	s.pos, s.state = end, sAfter
	return t, nil
}

// literal scans true, false or null at i into the token.
func (s *scanner) literal(i int) (int, error) {
	src, t := s.src, &s.tok
	var lit string
	switch c := src[i]; c {
	case 't':
		t.kind, lit = tTrue, "true"
	case 'f':
		t.kind, lit = tFalse, "false"
	case 'n':
		t.kind, lit = tNull, "null"
	default:
		return 0, unexpected(i, c, "")
	}
	if len(src)-i < len(lit) || string(src[i:i+len(lit)]) != lit {
		// A literal cut short ("tr") is the end of the input.
		eof := len(src)-i < len(lit) && lit[:len(src)-i] == string(src[i:])
		return 0, &syntaxError{off: i, msg: "invalid literal", eof: eof}
	}
	return i + len(lit), nil
}

// unexpected is the error of an unexpected byte c at i. It is kept out of
// next, whose frame would otherwise hold fmt's arguments on every call.
//
//go:noinline
func unexpected(i int, c byte, where string) error {
	return &syntaxError{off: i, msg: fmt.Sprintf("unexpected character %q%s", c, where)}
}

// pendingName reports the member name whose value next failed, if it did:
// the name was scanned and its value was not.
func (s *scanner) pendingName() (kstart, kend int, esc, ok bool) {
	if s.state != sValue || len(s.stack) == 0 || s.stack[len(s.stack)-1] != '{' || s.tok.kstart < 0 {
		return 0, 0, false, false
	}
	return int(s.tok.kstart), int(s.tok.kend), s.tok.kesc, true
}

// close returns the tEnd of the innermost container, whose closing bracket
// is at i.
func (s *scanner) close(i int) *token {
	s.stack = s.stack[:len(s.stack)-1]
	s.pos, s.state = i+1, sAfter
	t := &s.tok
	t.kind, t.start, t.end, t.kstart, t.kend = tEnd, int32(i), int32(i+1), -1, -1
	return t
}

// skip scans past the end of the innermost open container (the one whose
// tArray or tObject was just returned), validating it, and returns the
// offset just past its closing bracket.
func (s *scanner) skip() (int, error) {
	depth := len(s.stack)
	for {
		t, err := s.next()
		if err != nil {
			return 0, err
		}
		if t.kind == tEnd && len(s.stack) < depth {
			return int(t.end), nil
		}
	}
}

func skipWS(src []byte, i int) int {
	for i < len(src) && src[i] <= ' ' && wsMask&(1<<src[i]) != 0 {
		i++
	}
	return i
}

// wsMask has the bits of the JSON whitespace bytes, all below 64.
const wsMask = 1<<' ' | 1<<'\t' | 1<<'\n' | 1<<'\r'

// plain marks the bytes that stand for themselves in a string: not a
// quote, a backslash or a control character. Scanning runs of them in a
// tight loop is what makes strings, most of a typical body, cheap.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainString is the common case of scanString, small enough to be inlined
// where calls are what costs: a string without escapes or control
// characters. It returns the offset past its closing quote, or -1 for
// any other string.
func plainString(src []byte, i int) int {
	j := i + 1
	for j < len(src) && plain[src[j]] {
		j++
	}
	if j < len(src) && src[j] == '"' {
		return j + 1
	}
	return -1
}

// scanString scans the string starting with the quote at i and returns the
// offset just past its closing quote.
func scanString(src []byte, i int) (end int, esc bool, err error) {
	for j := i + 1; j < len(src); j++ {
		for j < len(src) && plain[src[j]] {
			j++
		}
		if j >= len(src) {
			break
		}
		switch c := src[j]; {
		case c == '"':
			return j + 1, esc, nil
		case c == '\\':
			esc = true
			j++
			if j >= len(src) {
				return 0, false, &syntaxError{off: j, msg: "unexpected end of input in a string", eof: true}
			}
			switch src[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(src) {
					return 0, false, &syntaxError{off: j, msg: "unexpected end of input in a string", eof: true}
				}
				for k := j + 1; k <= j+4; k++ {
					if !isHex(src[k]) {
						return 0, false, &syntaxError{off: k, msg: "invalid \\u escape"}
					}
				}
				j += 4
			default:
				return 0, false, &syntaxError{off: j, msg: "invalid escape"}
			}
		default: // c < 0x20
			return 0, false, &syntaxError{off: j, msg: "control character in a string"}
		}
	}
	return 0, false, &syntaxError{off: len(src), msg: "unexpected end of input in a string", eof: true}
}

// plainInteger is the common case of scanNumber, small enough to be
// inlined: digits without a sign, fraction or exponent. It returns the
// offset past them, or -1 for any other number.
func plainInteger(src []byte, i int) int {
	j := i
	for j < len(src) && isDigit(src[j]) {
		j++
	}
	if j == i || (src[i] == '0' && j > i+1) || (j < len(src) && (src[j] == '.' || src[j]|0x20 == 'e')) {
		return -1
	}
	return j
}

// scanNumber scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at i. A
// number is complete where its digits end, so only a sign, point or
// exponent without digits can be cut short.
func scanNumber(src []byte, i int) (int, error) {
	j := i
	if src[j] == '-' {
		j++
	}
	switch {
	case j < len(src) && src[j] == '0':
		j++
	case j < len(src) && src[j] >= '1' && src[j] <= '9':
		for j < len(src) && isDigit(src[j]) {
			j++
		}
	default:
		return 0, badNumber(src, j)
	}
	if j < len(src) && src[j] == '.' {
		j++
		if j >= len(src) || !isDigit(src[j]) {
			return 0, badNumber(src, j)
		}
		for j < len(src) && isDigit(src[j]) {
			j++
		}
	}
	if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
		j++
		if j < len(src) && (src[j] == '+' || src[j] == '-') {
			j++
		}
		if j >= len(src) || !isDigit(src[j]) {
			return 0, badNumber(src, j)
		}
		for j < len(src) && isDigit(src[j]) {
			j++
		}
	}
	return j, nil
}

func badNumber(src []byte, j int) error {
	return &syntaxError{off: j, msg: "invalid number", eof: j >= len(src)}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
