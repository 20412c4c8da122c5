package compare

import (
	"errors"
	"fmt"
	"math"
	"sync"
)

// A parsed JSON document is a flat slice of nodes in document order: a
// container's children follow it, and every node knows the index just past
// its subtree (next). One slice per document, no per-value allocation, and
// no recursion while parsing, so deep nesting cannot exhaust the stack.

const (
	tNull uint8 = iota
	tFalse
	tTrue
	tNumber
	tString
	tArray
	tObject
)

// jsonType folds true and false into one type, for type_changed.
func jsonType(kind uint8) uint8 {
	if kind == tTrue {
		return tFalse
	}
	return kind
}

type node struct {
	kind uint8
	esc  bool // the string value contains escapes
	kesc bool // the member name contains escapes
	// start, end is the value's raw text (strings with their quotes).
	start, end int32
	// kstart, kend is the member name without quotes, for object members.
	kstart, kend int32
	next         int32 // index of the first node after this subtree
	n            int32 // number of children
}

type doc struct {
	src   []byte
	nodes []node
	stack []int32
}

var errTooLarge = errors.New("body too large to parse")

type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.off) }

var docPool = sync.Pool{New: func() any { return new(doc) }}

func getDoc() *doc { return docPool.Get().(*doc) }

// putDoc returns a document to the pool, dropping the source and any
// unusually large buffers so the pool does not pin big bodies.
func putDoc(d *doc) {
	d.src = nil
	if cap(d.nodes) > 1<<18 {
		d.nodes = nil
	}
	if cap(d.stack) > 1<<12 {
		d.stack = nil
	}
	docPool.Put(d)
}

func (d *doc) raw(i int32) []byte { n := &d.nodes[i]; return d.src[n.start:n.end] }

func (d *doc) keyRaw(i int32) []byte { n := &d.nodes[i]; return d.src[n.kstart:n.kend] }

// parse parses src strictly (RFC 8259), replacing the document's contents.
func (d *doc) parse(src []byte) error {
	if len(src) >= math.MaxInt32 {
		return errTooLarge
	}
	d.src = src
	d.nodes = d.nodes[:0]
	d.stack = d.stack[:0]
	if want := len(src)/16 + 4; cap(d.nodes) < want {
		d.nodes = make([]node, 0, want)
	}
	i := skipWS(src, 0)
	var ks, ke int32 = -1, -1
	var kesc bool
	for {
		// A value starts at i.
		if i >= len(src) {
			return &syntaxError{i, "unexpected end of input"}
		}
		idx := int32(len(d.nodes))
		if len(d.stack) > 0 {
			d.nodes[d.stack[len(d.stack)-1]].n++
		}
		nd := node{start: int32(i), kstart: ks, kend: ke, kesc: kesc}
		switch c := src[i]; {
		case c == '{' || c == '[':
			nd.kind = tArray
			closer := byte(']')
			if c == '{' {
				nd.kind, closer = tObject, '}'
			}
			d.nodes = append(d.nodes, nd)
			d.stack = append(d.stack, idx)
			i = skipWS(src, i+1)
			if i < len(src) && src[i] == closer {
				break // empty: closed below
			}
			if c == '{' {
				var err error
				if ks, ke, kesc, i, err = parseKey(src, i); err != nil {
					return err
				}
			} else {
				ks, ke, kesc = -1, -1, false
			}
			continue
		case c == '"':
			end, esc, err := scanString(src, i)
			if err != nil {
				return err
			}
			nd.kind, nd.esc, nd.end, nd.next = tString, esc, int32(end), idx+1
			d.nodes = append(d.nodes, nd)
			i = end
		case c == '-' || (c >= '0' && c <= '9'):
			end, err := scanNumber(src, i)
			if err != nil {
				return err
			}
			nd.kind, nd.end, nd.next = tNumber, int32(end), idx+1
			d.nodes = append(d.nodes, nd)
			i = end
		default:
			var lit string
			switch c {
			case 't':
				nd.kind, lit = tTrue, "true"
			case 'f':
				nd.kind, lit = tFalse, "false"
			case 'n':
				nd.kind, lit = tNull, "null"
			default:
				return &syntaxError{i, fmt.Sprintf("unexpected character %q", c)}
			}
			if len(src)-i < len(lit) || string(src[i:i+len(lit)]) != lit {
				return &syntaxError{i, "invalid literal"}
			}
			i += len(lit)
			nd.end, nd.next = int32(i), idx+1
			d.nodes = append(d.nodes, nd)
		}
		// After a value: close containers until a comma starts the next
		// value or the document ends.
		for {
			if len(d.stack) == 0 {
				if i = skipWS(src, i); i != len(src) {
					return &syntaxError{i, "data after the top-level value"}
				}
				return nil
			}
			if i = skipWS(src, i); i >= len(src) {
				return &syntaxError{i, "unexpected end of input"}
			}
			top := d.stack[len(d.stack)-1]
			kind := d.nodes[top].kind
			c := src[i]
			if c == ',' {
				i = skipWS(src, i+1)
				if kind == tObject {
					var err error
					if ks, ke, kesc, i, err = parseKey(src, i); err != nil {
						return err
					}
				} else {
					ks, ke, kesc = -1, -1, false
				}
				break
			}
			if (c == '}' && kind == tObject) || (c == ']' && kind == tArray) {
				i++
				d.nodes[top].end = int32(i)
				d.nodes[top].next = int32(len(d.nodes))
				d.stack = d.stack[:len(d.stack)-1]
				continue
			}
			return &syntaxError{i, fmt.Sprintf("unexpected character %q after a value", c)}
		}
	}
}

// parseKey parses `"name"` `:` at i and returns the name's span without
// quotes and the offset of the member's value.
func parseKey(src []byte, i int) (ks, ke int32, esc bool, next int, err error) {
	if i >= len(src) || src[i] != '"' {
		return 0, 0, false, i, &syntaxError{i, "expected a member name"}
	}
	end, esc, err := scanString(src, i)
	if err != nil {
		return 0, 0, false, i, err
	}
	j := skipWS(src, end)
	if j >= len(src) || src[j] != ':' {
		return 0, 0, false, j, &syntaxError{j, "expected ':' after a member name"}
	}
	return int32(i + 1), int32(end - 1), esc, skipWS(src, j+1), nil
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
				return 0, false, &syntaxError{j, "unexpected end of input in a string"}
			}
			switch src[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(src) {
					return 0, false, &syntaxError{j, "unexpected end of input in a string"}
				}
				for k := j + 1; k <= j+4; k++ {
					if !isHex(src[k]) {
						return 0, false, &syntaxError{k, "invalid \\u escape"}
					}
				}
				j += 4
			default:
				return 0, false, &syntaxError{j, "invalid escape"}
			}
		case c < 0x20:
			return 0, false, &syntaxError{j, "control character in a string"}
		}
	}
	return 0, false, &syntaxError{len(src), "unexpected end of input in a string"}
}

// scanNumber scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at i.
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
		return 0, &syntaxError{j, "invalid number"}
	}
	if j < len(src) && src[j] == '.' {
		j++
		if j >= len(src) || !isDigit(src[j]) {
			return 0, &syntaxError{j, "invalid number"}
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
			return 0, &syntaxError{j, "invalid number"}
		}
		for j < len(src) && isDigit(src[j]) {
			j++
		}
	}
	return j, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// members maps the member names of object i to their value nodes.
func (d *doc) members(i int32) map[string]int32 {
	m := make(map[string]int32, d.nodes[i].n)
	for c, k := i+1, int32(0); k < d.nodes[i].n; c, k = d.nodes[c].next, k+1 {
		m[d.key(c)] = c
	}
	return m
}

// key returns the unescaped member name of node i.
func (d *doc) key(i int32) string {
	return string(d.keyBytes(i))
}

// keyBytes returns the unescaped member name of node i, without copying
// when it has no escapes.
func (d *doc) keyBytes(i int32) []byte {
	n := &d.nodes[i]
	if !n.kesc {
		return d.src[n.kstart:n.kend]
	}
	return []byte(unescape(d.src[n.kstart:n.kend]))
}
