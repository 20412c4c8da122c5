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
	tObject // "{": the members follow, each a tName and a value, then a tEnd
	tName   // a member name and its ":"; its value follows
	tEnd    // "]" or "}"
	tDone   // the end of the document, after its one value
)

// A token is a span of the source: a value's text (strings and names with
// their quotes), the one byte of a bracket, nothing for tDone.
type token struct {
	kind       uint8
	esc        bool // a string or name that contains escapes
	start, end int
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
	pos   int    // where the next token is looked for: just past the last one returned
	stack []byte // the open containers, '[' or '{'
	state uint8
}

// reset starts scanning src, keeping the stack's buffer.
func (s *scanner) reset(src []byte) {
	s.src, s.pos, s.stack, s.state = src, 0, s.stack[:0], sValue
}

// depth is the number of open containers.
func (s *scanner) depth() int { return len(s.stack) }

// next returns the next token, tDone once the document is complete, or the
// first syntax error. After an error the scanner stays where it was: pos is
// still just past the last token returned.
func (s *scanner) next() (token, error) {
	src := s.src
	i := skipWS(src, s.pos)
	state := s.state
	if state == sAfter {
		if len(s.stack) == 0 {
			if i != len(src) {
				return token{}, &syntaxError{off: i, msg: "data after the top-level value"}
			}
			s.pos = i
			return token{kind: tDone, start: i, end: i}, nil
		}
		if i >= len(src) {
			return token{}, &syntaxError{off: i, msg: "unexpected end of input", eof: true}
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
			return token{}, &syntaxError{off: i, msg: fmt.Sprintf("unexpected character %q after a value", c)}
		}
	}
	if state == sName || state == sNameOrEnd {
		if state == sNameOrEnd && i < len(src) && src[i] == '}' {
			return s.close(i), nil
		}
		return s.name(i)
	}
	if i >= len(src) {
		return token{}, &syntaxError{off: i, msg: "unexpected end of input", eof: true}
	}
	t := token{start: i}
	switch c := src[i]; {
	case c == ']' && state == sValueOrEnd:
		return s.close(i), nil
	case c == '{' || c == '[':
		s.stack = append(s.stack, c)
		t.kind, t.end, s.state = tArray, i+1, sValueOrEnd
		if c == '{' {
			t.kind, s.state = tObject, sNameOrEnd
		}
		s.pos = i + 1
		return t, nil
	case c == '"':
		end, esc, err := scanString(src, i)
		if err != nil {
			return token{}, err
		}
		t.kind, t.esc, t.end = tString, esc, end
	case c == '-' || isDigit(c):
		end, err := scanNumber(src, i)
		if err != nil {
			return token{}, err
		}
		t.kind, t.end = tNumber, end
	default:
		var lit string
		switch c {
		case 't':
			t.kind, lit = tTrue, "true"
		case 'f':
			t.kind, lit = tFalse, "false"
		case 'n':
			t.kind, lit = tNull, "null"
		default:
			return token{}, &syntaxError{off: i, msg: fmt.Sprintf("unexpected character %q", c)}
		}
		if len(src)-i < len(lit) || string(src[i:i+len(lit)]) != lit {
			// A literal cut short ("tr") is the end of the input.
			eof := len(src)-i < len(lit) && lit[:len(src)-i] == string(src[i:])
			return token{}, &syntaxError{off: i, msg: "invalid literal", eof: eof}
		}
		t.end = i + len(lit)
	}
	s.pos, s.state = t.end, sAfter
	return t, nil
}

// name scans a member name and its ":" at i.
func (s *scanner) name(i int) (token, error) {
	src := s.src
	if i >= len(src) || src[i] != '"' {
		return token{}, &syntaxError{off: i, msg: "expected a member name", eof: i >= len(src)}
	}
	end, esc, err := scanString(src, i)
	if err != nil {
		return token{}, err
	}
	j := skipWS(src, end)
	if j >= len(src) || src[j] != ':' {
		return token{}, &syntaxError{off: j, msg: "expected ':' after a member name", eof: j >= len(src)}
	}
	s.pos, s.state = j+1, sValue
	return token{kind: tName, esc: esc, start: i, end: end}, nil
}

// close returns the tEnd of the innermost container, whose closing bracket
// is at i.
func (s *scanner) close(i int) token {
	s.stack = s.stack[:len(s.stack)-1]
	s.pos, s.state = i+1, sAfter
	return token{kind: tEnd, start: i, end: i + 1}
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
			return t.end, nil
		}
	}
}

func skipWS(src []byte, i int) int {
	for i < len(src) {
		switch src[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString scans the string starting with the quote at i and returns the
// offset just past its closing quote.
func scanString(src []byte, i int) (end int, esc bool, err error) {
	for j := i + 1; j < len(src); j++ {
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
		case c < 0x20:
			return 0, false, &syntaxError{off: j, msg: "control character in a string"}
		}
	}
	return 0, false, &syntaxError{off: len(src), msg: "unexpected end of input in a string", eof: true}
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
