package compare

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// seg is one step of the current path: an array index, or an object member
// named by a node of one of the documents.
type seg struct {
	d     *doc
	node  int32
	index int32
	isIdx bool
}

// walker compares two parsed documents structurally.
type walker struct {
	st      *state
	a, b    *doc
	path    []seg
	cutPath string // first path where MaxDepth was reached
}

func (w *walker) add(kind string) { w.st.add(w.pathString(), kind) }

func (w *walker) pushKey(d *doc, i int32) { w.path = append(w.path, seg{d: d, node: i}) }

func (w *walker) pushIndex(i int32) { w.path = append(w.path, seg{index: i, isIdx: true}) }

func (w *walker) pop() { w.path = w.path[:len(w.path)-1] }

// value compares node ai of a with node bi of b, depth containers down.
func (w *walker) value(ai, bi int32, depth int) {
	if w.st.full {
		return
	}
	na, nb := &w.a.nodes[ai], &w.b.nodes[bi]
	if jsonType(na.kind) != jsonType(nb.kind) {
		w.add(KindTypeChanged)
		return
	}
	switch na.kind {
	case tNull:
	case tTrue, tFalse:
		if na.kind != nb.kind {
			w.add(KindValueChanged)
		}
	case tNumber:
		if !numEqual(w.a.raw(ai), w.b.raw(bi)) {
			w.add(KindValueChanged)
		}
	case tString:
		if !strEqual(w.a.raw(ai), na.esc, w.b.raw(bi), nb.esc) {
			w.add(KindValueChanged)
		}
	case tArray, tObject:
		// Equal text is equal JSON; this makes unchanged subtrees cheap.
		if bytes.Equal(w.a.raw(ai), w.b.raw(bi)) {
			return
		}
		if depth >= w.st.maxDepth {
			if w.cutPath == "" {
				w.cutPath = w.pathString()
			}
			w.add(KindValueChanged)
			return
		}
		if na.kind == tArray {
			w.array(ai, bi, depth)
		} else {
			w.object(ai, bi, depth)
		}
	}
}

func (w *walker) array(ai, bi int32, depth int) {
	na, nb := w.a.nodes[ai], w.b.nodes[bi]
	if na.n != nb.n {
		w.add(KindArrayLength)
	}
	ca, cb := ai+1, bi+1
	var k int32
	for ; k < na.n && k < nb.n && !w.st.full; k++ {
		w.pushIndex(k)
		w.value(ca, cb, depth+1)
		w.pop()
		ca, cb = w.a.nodes[ca].next, w.b.nodes[cb].next
	}
	for ; k < na.n && !w.st.full; k++ {
		w.pushIndex(k)
		w.add(KindMissingField)
		w.pop()
	}
	for ; k < nb.n && !w.st.full; k++ {
		w.pushIndex(k)
		w.add(KindExtraField)
		w.pop()
	}
}

func (w *walker) object(ai, bi int32, depth int) {
	na, nb := w.a.nodes[ai], w.b.nodes[bi]
	if na.n == nb.n && w.sameKeys(ai, bi) {
		ca, cb := ai+1, bi+1
		for k := int32(0); k < na.n && !w.st.full; k++ {
			w.pushKey(w.a, ca)
			w.value(ca, cb, depth+1)
			w.pop()
			ca, cb = w.a.nodes[ca].next, w.b.nodes[cb].next
		}
		return
	}
	// Members in a different order or with different names: index both by
	// name; a later duplicate overwrites an earlier one, as in encoding/json.
	am, bm := w.a.members(ai), w.b.members(bi)
	for c, k := ai+1, int32(0); k < na.n && !w.st.full; c, k = w.a.nodes[c].next, k+1 {
		name := w.a.key(c)
		if am[name] != c {
			continue
		}
		w.pushKey(w.a, c)
		if bc, ok := bm[name]; ok {
			w.value(c, bc, depth+1)
		} else {
			w.add(KindMissingField)
		}
		w.pop()
	}
	for c, k := bi+1, int32(0); k < nb.n && !w.st.full; c, k = w.b.nodes[c].next, k+1 {
		name := w.b.key(c)
		if bm[name] != c {
			continue
		}
		if _, ok := am[name]; !ok {
			w.pushKey(w.b, c)
			w.add(KindExtraField)
			w.pop()
		}
	}
}

// sameKeys reports whether two objects with the same number of members
// name them identically in the same order.
func (w *walker) sameKeys(ai, bi int32) bool {
	ca, cb := ai+1, bi+1
	for k := int32(0); k < w.a.nodes[ai].n; k++ {
		x, y := &w.a.nodes[ca], &w.b.nodes[cb]
		if !nameEqual(w.a.keyRaw(ca), x.kesc, w.b.keyRaw(cb), y.kesc) {
			return false
		}
		ca, cb = x.next, y.next
	}
	return true
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
	n := &d.nodes[i]
	if !n.kesc {
		return string(d.src[n.kstart:n.kend])
	}
	return unescape(d.src[n.kstart-1 : n.kend+1])
}

// unescape decodes a JSON string literal (with quotes) already validated by
// the parser.
func unescape(lit []byte) string {
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return string(lit[1 : len(lit)-1])
	}
	return s
}

// strEqual compares two JSON string literals (with quotes) by value.
func strEqual(a []byte, aesc bool, b []byte, besc bool) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if !aesc && !besc {
		return false
	}
	return unescape(a) == unescape(b)
}

// nameEqual compares two member names (without quotes) by value.
func nameEqual(a []byte, aesc bool, b []byte, besc bool) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if !aesc && !besc {
		return false
	}
	return unescapeBare(a) == unescapeBare(b)
}

func unescapeBare(s []byte) string {
	q := make([]byte, 0, len(s)+2)
	q = append(q, '"')
	q = append(q, s...)
	q = append(q, '"')
	return unescape(q)
}

func (w *walker) pathString() string {
	var b strings.Builder
	b.WriteByte('$')
	for _, s := range w.path {
		if s.isIdx {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(int(s.index)))
			b.WriteByte(']')
			continue
		}
		writeKey(&b, s.d.key(s.node))
	}
	return b.String()
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
		c := k[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// numEqual reports whether two JSON number literals have the same exact
// decimal value.
func numEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	x, okx := parseDecimal(a)
	y, oky := parseDecimal(b)
	if !okx || !oky {
		return false
	}
	if x.zero || y.zero {
		return x.zero && y.zero
	}
	if x.neg != y.neg || x.exp != y.exp || x.ndig != y.ndig {
		return false
	}
	for k := 0; k < x.ndig; k++ {
		if x.digit(k) != y.digit(k) {
			return false
		}
	}
	return true
}

// decimal is a number literal as 0.d1d2...dn × 10^exp with d1 and dn
// non-zero; the digits stay in the literal.
type decimal struct {
	neg, zero bool
	ip, fp    []byte // integer and fraction digits of the literal
	first     int    // index of d1 in ip+fp
	ndig      int
	exp       int64
}

func (d *decimal) digit(k int) byte {
	i := d.first + k
	if i < len(d.ip) {
		return d.ip[i]
	}
	return d.fp[i-len(d.ip)]
}

// parseDecimal reads a literal the parser validated. It fails only for an
// exponent too long to hold exactly.
func parseDecimal(s []byte) (decimal, bool) {
	var d decimal
	i := 0
	if i < len(s) && s[i] == '-' {
		d.neg = true
		i++
	}
	j := i
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	d.ip = s[i:j]
	if j < len(s) && s[j] == '.' {
		k := j + 1
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		d.fp = s[j+1 : k]
		j = k
	}
	var e int64
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		j++
		eneg := false
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			eneg = s[j] == '-'
			j++
		}
		for j < len(s) && s[j] == '0' {
			j++
		}
		if len(s)-j > 18 {
			return d, false
		}
		for ; j < len(s); j++ {
			e = e*10 + int64(s[j]-'0')
		}
		if eneg {
			e = -e
		}
	}
	total := len(d.ip) + len(d.fp)
	d.first = 0
	for d.first < total && d.digitAt(d.first) == '0' {
		d.first++
	}
	if d.first == total {
		d.zero = true
		return d, true
	}
	last := total - 1
	for d.digitAt(last) == '0' {
		last--
	}
	d.ndig = last - d.first + 1
	d.exp = int64(len(d.ip)) - int64(d.first) + e
	return d, true
}

func (d *decimal) digitAt(i int) byte {
	if i < len(d.ip) {
		return d.ip[i]
	}
	return d.fp[i-len(d.ip)]
}
