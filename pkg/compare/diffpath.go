package compare

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The path of the walk is a stack of segs that point into the documents;
// it is rendered to strings (pathStrings) only when a diff is recorded, so
// a walk that finds nothing builds no strings.

// seg is one step of the current path: an array index, or an object member
// named by a node of one of the documents.
type seg struct {
	d     *doc
	node  int32
	index int32
	isIdx bool
}

func (w *walker) pushKey(d *doc, i int32) { w.path = append(w.path, seg{d: d, node: i}) }

func (w *walker) pushIndex(i int32) { w.path = append(w.path, seg{index: i, isIdx: true}) }

func (w *walker) pop() { w.path = w.path[:len(w.path)-1] }

// pathStrings renders the current path and its generalized form.
func (w *walker) pathStrings() (path, generalized string) {
	var b strings.Builder
	b.WriteByte('$')
	hasIdx := false
	for _, s := range w.path {
		if s.isIdx {
			hasIdx = true
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(int(s.index)))
			b.WriteByte(']')
			continue
		}
		writeKey(&b, s.d.key(s.node))
	}
	path = b.String()
	if !hasIdx {
		return path, path
	}
	b.Reset()
	b.WriteByte('$')
	for _, s := range w.path {
		if s.isIdx {
			b.WriteString("[*]")
			continue
		}
		writeKey(&b, s.d.key(s.node))
	}
	return path, b.String()
}

// writeKey writes ".name" for identifier-like names, else ["name"] with
// JSON string escaping.
func writeKey(b *strings.Builder, k string) {
	if isIdent(k) {
		b.WriteByte('.')
		b.WriteString(k)
		return
	}
	b.WriteString(`["`)
	k = strings.ToValidUTF8(k, "\uFFFD")
	for i := 0; i < len(k); {
		c := k[i]
		if c >= utf8.RuneSelf {
			_, size := utf8.DecodeRuneInString(k[i:])
			b.WriteString(k[i : i+size])
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&0xf])
		default:
			b.WriteByte(c)
		}
		i++
	}
	b.WriteString(`"]`)
}

func isIdent(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isIdentByte(k[i], i == 0) {
			return false
		}
	}
	return true
}
