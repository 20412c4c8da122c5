package compare

import (
	"bytes"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
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
//
// Besides recording diffs it can probe: compare two subtrees only to learn
// whether they are equal (equal), which multiset matching of arrays needs.
// A probe records nothing, stops at its first difference, and is charged to
// a work budget so that matching cannot go quadratic without bound.
type walker struct {
	st         *state
	a, b       *doc
	rs         rstate
	path       []seg
	cutPath    string // first path where MaxDepth was reached
	budgetPath string // first path where the probe budget ran out
	tol        bool
	abs, rel   float64
	probing    int
	probeDiff  bool
	budget     int
	ints       []int32  // scratch stack, used LIFO by nested calls
	hs         []uint64 // scratch stack, used LIFO by nested calls
	seed       maphash.Seed
}

var walkerPool = sync.Pool{New: func() any { return &walker{seed: maphash.MakeSeed()} }}

func newWalker(s *state, a, b *doc) *walker {
	w := walkerPool.Get().(*walker)
	w.st, w.a, w.b = s, a, b
	w.rs.m = s.rs.m
	w.tol, w.abs, w.rel = s.rs.tol, s.rs.abs, s.rs.rel
	w.budget = 8*(len(a.nodes)+len(b.nodes)) + 1<<16
	return w
}

func (w *walker) release() {
	w.st, w.a, w.b, w.rs.m = nil, nil, nil, nil
	w.cutPath, w.budgetPath = "", ""
	w.probing, w.probeDiff = 0, false
	w.path, w.rs.ss, w.ints, w.hs = w.path[:0], w.rs.ss[:0], w.ints[:0], w.hs[:0]
	if cap(w.ints) > 1<<16 || cap(w.hs) > 1<<16 || cap(w.rs.ss) > 1<<16 || cap(w.path) > 1<<12 {
		w.path, w.rs.ss, w.ints, w.hs = nil, nil, nil, nil
	}
	walkerPool.Put(w)
}

func (w *walker) compare() {
	root := w.rs.root()
	w.value(0, 0, 0, root)
	w.rs.leave(root)
	if w.cutPath != "" {
		w.st.truncated = true
		w.st.note("JSON nested deeper than %d levels (first at %s): compared as text below that depth", w.st.maxDepth, w.cutPath)
	}
	if w.budgetPath != "" {
		w.st.truncated = true
		w.st.note("work bound of array matching reached (first at %s): some equal elements may be reported as missing and extra", w.budgetPath)
	}
}

func (w *walker) stopped() bool { return w.st.full || (w.probing > 0 && w.probeDiff) }

func (w *walker) add(kind string) {
	if w.probing > 0 {
		w.probeDiff = true
		return
	}
	if len(w.st.diffs) >= w.st.maxDiffs {
		w.st.add("", "", kind) // counts it and marks the result full
		return
	}
	p, g := w.pathStrings()
	w.st.add(p, g, kind)
}

// equal reports whether two subtrees are equal under the rules, recording
// nothing.
func (w *walker) equal(ai, bi int32, depth int, ss int32) bool {
	saved := w.probeDiff
	w.probing++
	w.probeDiff = false
	w.value(ai, bi, depth, ss)
	eq := !w.probeDiff
	w.probing--
	w.probeDiff = saved
	return eq
}

// charge spends one unit of the probe budget; false when there is none.
func (w *walker) charge() bool {
	if w.probing == 0 {
		return true
	}
	if w.budget <= 0 {
		if w.budgetPath == "" {
			w.budgetPath, _ = w.pathStrings()
		}
		return false
	}
	w.budget--
	return true
}

func (w *walker) pushKey(d *doc, i int32) { w.path = append(w.path, seg{d: d, node: i}) }

func (w *walker) pushIndex(i int32) { w.path = append(w.path, seg{index: i, isIdx: true}) }

func (w *walker) pop() { w.path = w.path[:len(w.path)-1] }

func (w *walker) memberState(ss int32, d *doc, c int32) int32 {
	if ss < 0 {
		return noState
	}
	return w.rs.enter(ss, pseg{key: d.keyBytes(c)})
}

// value compares node ai of a with node bi of b, depth containers down, in
// rule state ss.
func (w *walker) value(ai, bi int32, depth int, ss int32) {
	if w.stopped() {
		return
	}
	if !w.charge() {
		w.probeDiff = true
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
		if ra, rb := w.a.raw(ai), w.b.raw(bi); !numEqual(ra, rb) && !w.near(ra, rb) {
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
				w.cutPath, _ = w.pathStrings()
			}
			w.add(KindValueChanged)
			return
		}
		if na.kind == tObject {
			w.object(ai, bi, depth, ss)
		} else if key, ok := w.rs.keyed(ss); ok {
			w.keyed(ai, bi, depth, ss, key)
		} else if w.rs.unordered(ss) {
			w.unordered(ai, bi, depth, ss)
		} else {
			w.positional(ai, bi, depth, ss)
		}
	}
}

// near reports whether two numbers are equal within the numeric tolerance.
func (w *walker) near(a, b []byte) bool {
	if !w.tol {
		return false
	}
	x, err1 := strconv.ParseFloat(string(a), 64)
	y, err2 := strconv.ParseFloat(string(b), 64)
	if err1 != nil || err2 != nil || math.IsInf(x, 0) || math.IsInf(y, 0) {
		return false
	}
	d := math.Abs(x - y)
	return d <= w.abs || d <= w.rel*math.Max(math.Abs(x), math.Abs(y))
}

func (w *walker) object(ai, bi int32, depth int, ss int32) {
	na, nb := w.a.nodes[ai], w.b.nodes[bi]
	if na.n == nb.n && w.sameKeys(ai, bi) {
		ca, cb := ai+1, bi+1
		for k := int32(0); k < na.n && !w.stopped(); k++ {
			cs := w.memberState(ss, w.a, ca)
			if !w.rs.ignored(cs) {
				w.pushKey(w.a, ca)
				w.value(ca, cb, depth+1, cs)
				w.pop()
			}
			w.rs.leave(cs)
			ca, cb = w.a.nodes[ca].next, w.b.nodes[cb].next
		}
		return
	}
	// Members in a different order or with different names: index both by
	// name; a later duplicate overwrites an earlier one, as in encoding/json.
	am, bm := w.a.members(ai), w.b.members(bi)
	for c, k := ai+1, int32(0); k < na.n && !w.stopped(); c, k = w.a.nodes[c].next, k+1 {
		name := w.a.key(c)
		if am[name] != c {
			continue
		}
		cs := w.memberState(ss, w.a, c)
		if !w.rs.ignored(cs) {
			w.pushKey(w.a, c)
			if bc, ok := bm[name]; ok {
				w.value(c, bc, depth+1, cs)
			} else {
				w.add(KindMissingField)
			}
			w.pop()
		}
		w.rs.leave(cs)
	}
	for c, k := bi+1, int32(0); k < nb.n && !w.stopped(); c, k = w.b.nodes[c].next, k+1 {
		name := w.b.key(c)
		if bm[name] != c {
			continue
		}
		if _, ok := am[name]; ok {
			continue
		}
		cs := w.memberState(ss, w.b, c)
		if !w.rs.ignored(cs) {
			w.pushKey(w.b, c)
			w.add(KindExtraField)
			w.pop()
		}
		w.rs.leave(cs)
	}
}

// element compares the elements ca and cb of a positional array at index k.
func (w *walker) element(ca, cb, k int32, depth int, ss int32) {
	cs := w.rs.enter(ss, pseg{isIdx: true, idx: k})
	if !w.rs.ignored(cs) {
		w.pushIndex(k)
		w.value(ca, cb, depth+1, cs)
		w.pop()
	}
	w.rs.leave(cs)
}

// only reports an element present on one side, at index k of that side.
func (w *walker) only(k int32, kind string, ss int32, generic bool) {
	cs := w.rs.enter(ss, pseg{isIdx: true, idx: k, generic: generic})
	if !w.rs.ignored(cs) {
		w.pushIndex(k)
		w.add(kind)
		w.pop()
	}
	w.rs.leave(cs)
}

// positional compares arrays element by element. With equal lengths, when
// the elements that differ in place are the same multiset on both sides,
// the change is one array_order diff instead of a cascade.
func (w *walker) positional(ai, bi int32, depth int, ss int32) {
	na, nb := w.a.nodes[ai].n, w.b.nodes[bi].n
	ca, cb := ai+1, bi+1
	if na != nb {
		w.add(KindArrayLength)
		k := int32(0)
		for ; k < na && k < nb && !w.stopped(); k++ {
			w.element(ca, cb, k, depth, ss)
			ca, cb = w.a.nodes[ca].next, w.b.nodes[cb].next
		}
		for ; k < na && !w.stopped(); k++ {
			w.only(k, KindMissingField, ss, false)
		}
		for ; k < nb && !w.stopped(); k++ {
			w.only(k, KindExtraField, ss, false)
		}
		return
	}
	// Elements with equal text are equal; only the others are looked at.
	base := len(w.ints)
	for k := int32(0); k < na; k++ {
		if !bytes.Equal(w.a.raw(ca), w.b.raw(cb)) {
			w.ints = append(w.ints, k, ca, cb)
		}
		ca, cb = w.a.nodes[ca].next, w.b.nodes[cb].next
	}
	nd := (len(w.ints) - base) / 3
	start := 0
	if nd >= 2 && w.probing == 0 {
		// Elements equal in place (other text, same value) need nothing
		// more: skip to the first one that differs. A probe needs no more
		// than that either: any difference in place is one.
		for ; start < nd; start++ {
			e := base + 3*start
			cs := w.rs.enter(ss, pseg{isIdx: true, idx: w.ints[e]})
			eq := w.rs.ignored(cs) || w.equal(w.ints[e+1], w.ints[e+2], depth+1, cs)
			w.rs.leave(cs)
			if !eq {
				break
			}
		}
		if nd-start >= 2 && w.sameMultiset(base+3*start, nd-start, depth, ss) {
			w.add(KindArrayOrder)
			w.ints = w.ints[:base]
			return
		}
	}
	for i := start; i < nd && !w.stopped(); i++ {
		e := base + 3*i
		w.element(w.ints[e+1], w.ints[e+2], w.ints[e], depth, ss)
	}
	w.ints = w.ints[:base]
}

// sameMultiset reports whether the nd (index, a node, b node) triples at
// w.ints[base:] hold the same multiset of elements on both sides.
func (w *walker) sameMultiset(base, nd int, depth int, ss int32) bool {
	gs := w.rs.enter(ss, pseg{isIdx: true, generic: true})
	defer w.rs.leave(gs)
	if w.rs.ignored(gs) {
		return false
	}
	hb := len(w.hs)
	defer func() { w.hs = w.hs[:hb] }()
	var sumA, sumB uint64
	for i := range nd {
		h := w.hash(w.a, w.ints[base+3*i+1], depth+1, gs)
		w.hs = append(w.hs, h)
		sumA += fmix(h)
	}
	for i := range nd {
		h := w.hash(w.b, w.ints[base+3*i+2], depth+1, gs)
		w.hs = append(w.hs, h)
		sumB += fmix(h)
	}
	if sumA != sumB {
		return false
	}
	ib := len(w.ints)
	defer func() { w.ints = w.ints[:ib] }()
	for i := range nd {
		w.ints = append(w.ints, w.ints[base+3*i+1])
	}
	for i := range nd {
		w.ints = append(w.ints, w.ints[base+3*i+2])
	}
	return w.match(ib, hb, nd, nd, depth, gs) == nd
}

// match pairs na elements of a with nb elements of b, greedily in a's
// order, each with the first equal unpaired element of b. Their nodes are
// at w.ints[ib:ib+na+nb] and their hashes at w.hs[hb:hb+na+nb]. It appends
// the partner of each a element (-1 for none) and then of each b element
// to w.ints, after the nodes, and returns how many pairs it made.
func (w *walker) match(ib, hb, na, nb int, depth int, gs int32) int {
	// Candidates in b sorted by hash.
	ob := len(w.ints)
	for j := range nb {
		w.ints = append(w.ints, int32(j))
	}
	order := w.ints[ob : ob+nb]
	hsB := w.hs[hb+na : hb+na+nb]
	slices.SortFunc(order, func(x, y int32) int {
		hx, hy := hsB[x], hsB[y]
		switch {
		case hx < hy:
			return -1
		case hx > hy:
			return 1
		}
		return int(x - y)
	})
	pa := len(w.ints)
	for range na + nb {
		w.ints = append(w.ints, -1)
	}
	pb := pa + na
	// cur[lo] is where to resume scanning the group of equal hashes that
	// starts at lo: candidates before it are all paired, so a run of equal
	// elements pairs in linear time.
	cur := len(w.ints)
	for range nb {
		w.ints = append(w.ints, -1)
	}
	pairs := 0
	for i := 0; i < na && !w.st.full; i++ {
		if w.budget <= 0 {
			// Out of probes: the rest stays unpaired (see Bounds).
			if w.budgetPath == "" {
				w.budgetPath, _ = w.pathStrings()
			}
			break
		}
		h := w.hs[hb+i]
		lo, found := slices.BinarySearchFunc(w.ints[ob:ob+nb], h, func(j int32, h uint64) int {
			if hj := w.hs[hb+na+int(j)]; hj < h {
				return -1
			} else if hj > h {
				return 1
			}
			return 0
		})
		if !found {
			continue
		}
		p := max(lo, int(w.ints[cur+lo]))
		free := -1
		for ; p < nb && w.budget > 0; p++ {
			j := w.ints[ob+p]
			if w.hs[hb+na+int(j)] != h {
				break
			}
			if w.ints[pb+int(j)] >= 0 {
				continue
			}
			if w.equal(w.ints[ib+i], w.ints[ib+na+int(j)], depth+1, gs) {
				w.ints[pa+i], w.ints[pb+int(j)] = j, int32(i)
				pairs++
				p++
				break
			}
			if free < 0 {
				free = p
			}
		}
		if free >= 0 {
			p = free
		}
		w.ints[cur+lo] = int32(p)
	}
	// Keep the partners right after the nodes for the caller.
	copy(w.ints[ob:], w.ints[pa:pa+na+nb])
	w.ints = w.ints[:ob+na+nb]
	return pairs
}

// unordered compares arrays as multisets: each primary element without an
// equal shadow element is missing_field at its primary index, each shadow
// element without an equal primary element extra_field at its shadow
// index.
func (w *walker) unordered(ai, bi int32, depth int, ss int32) {
	gs := w.rs.enter(ss, pseg{isIdx: true, generic: true})
	defer w.rs.leave(gs)
	if w.rs.ignored(gs) {
		return
	}
	na, nb := int(w.a.nodes[ai].n), int(w.b.nodes[bi].n)
	if w.probing > 0 && na != nb {
		w.probeDiff = true
		return
	}
	ib, hb := len(w.ints), len(w.hs)
	defer func() { w.ints, w.hs = w.ints[:ib], w.hs[:hb] }()
	for c, k := ai+1, 0; k < na; c, k = w.a.nodes[c].next, k+1 {
		w.ints = append(w.ints, c)
		w.hs = append(w.hs, w.hash(w.a, c, depth+1, gs))
	}
	for c, k := bi+1, 0; k < nb; c, k = w.b.nodes[c].next, k+1 {
		w.ints = append(w.ints, c)
		w.hs = append(w.hs, w.hash(w.b, c, depth+1, gs))
	}
	if w.match(ib, hb, na, nb, depth, gs) == na && na == nb {
		return
	}
	part := ib + na + nb
	for i := 0; i < na && !w.stopped(); i++ {
		if w.ints[part+i] < 0 {
			w.pushIndex(int32(i))
			w.add(KindMissingField)
			w.pop()
		}
	}
	for j := 0; j < nb && !w.stopped(); j++ {
		if w.ints[part+na+j] < 0 {
			w.pushIndex(int32(j))
			w.add(KindExtraField)
			w.pop()
		}
	}
}

// kelem is an element of an array matched by key.
type kelem struct {
	node    int32
	key     string
	keyed   bool
	partner int32
}

// keyed compares arrays whose elements are identified by the value of a
// key member: elements are paired by that value, those without one (not
// an object, no such member, a container value, or a value already taken
// by an earlier element) by their order among themselves. A paired
// element's diffs use its primary index; an unpaired one is missing_field
// at its primary index or extra_field at its shadow index. When the
// paired keyed elements come in another relative order, one array_order
// diff is reported at the array's path first (unless the array is also
// unordered).
func (w *walker) keyed(ai, bi int32, depth int, ss int32, key string) {
	gs := w.rs.enter(ss, pseg{isIdx: true, generic: true})
	defer w.rs.leave(gs)
	if w.rs.ignored(gs) {
		return
	}
	ea, eb := w.keyElems(w.a, ai, key), w.keyElems(w.b, bi, key)
	byKey := make(map[string]int32, len(eb))
	for j, e := range eb {
		if e.keyed {
			byKey[e.key] = int32(j)
		}
	}
	for i := range ea {
		if !ea[i].keyed {
			continue
		}
		if j, ok := byKey[ea[i].key]; ok {
			ea[i].partner, eb[j].partner = j, int32(i)
		}
	}
	j := 0
	for i := range ea {
		if ea[i].keyed {
			continue
		}
		for j < len(eb) && eb[j].keyed {
			j++
		}
		if j == len(eb) {
			break
		}
		ea[i].partner, eb[j].partner = int32(j), int32(i)
		j++
	}
	if !w.rs.unordered(ss) {
		last := int32(-1)
		for _, e := range ea {
			if e.keyed && e.partner >= 0 {
				if e.partner < last {
					w.add(KindArrayOrder)
					break
				}
				last = e.partner
			}
		}
	}
	for i, e := range ea {
		if w.stopped() {
			return
		}
		w.pushIndex(int32(i))
		if e.partner >= 0 {
			w.value(e.node, eb[e.partner].node, depth+1, gs)
		} else {
			w.add(KindMissingField)
		}
		w.pop()
	}
	for j, e := range eb {
		if w.stopped() {
			return
		}
		if e.partner < 0 {
			w.pushIndex(int32(j))
			w.add(KindExtraField)
			w.pop()
		}
	}
}

func (w *walker) keyElems(d *doc, ai int32, key string) []kelem {
	n := d.nodes[ai].n
	out := make([]kelem, 0, n)
	seen := make(map[string]bool, n)
	for c, k := ai+1, int32(0); k < n; c, k = d.nodes[c].next, k+1 {
		e := kelem{node: c, partner: -1}
		if kv, ok := keyValue(d, c, key); ok && !seen[kv] {
			seen[kv] = true
			e.key, e.keyed = kv, true
		}
		out = append(out, e)
	}
	return out
}

// keyValue returns the identity of the key member's value of object c: a
// scalar, by value (1 and 1.0 are one key, "\u0041" and "A" too).
func keyValue(d *doc, c int32, key string) (string, bool) {
	if d.nodes[c].kind != tObject {
		return "", false
	}
	v := int32(-1)
	for m, k := c+1, int32(0); k < d.nodes[c].n; m, k = d.nodes[m].next, k+1 {
		if string(d.keyBytes(m)) == key {
			v = m // the last one counts, as for objects
		}
	}
	if v < 0 {
		return "", false
	}
	n := &d.nodes[v]
	switch n.kind {
	case tString:
		raw := d.raw(v)
		return "s" + unescape(raw[1:len(raw)-1]), true
	case tNumber:
		return "n" + canonicalNumber(d.raw(v)), true
	case tTrue:
		return "t", true
	case tFalse:
		return "f", true
	case tNull:
		return "z", true
	}
	return "", false
}

// canonicalNumber is a text form equal for equal decimal values.
func canonicalNumber(raw []byte) string {
	x, ok := parseDecimal(raw)
	if !ok {
		return "raw:" + string(raw)
	}
	if x.zero {
		return "0"
	}
	var b strings.Builder
	if x.neg {
		b.WriteByte('-')
	}
	for k := 0; k < x.ndig; k++ {
		b.WriteByte(x.digit(k))
	}
	b.WriteByte('e')
	b.WriteString(strconv.FormatInt(x.exp, 10))
	return b.String()
}

// Hashing: hash(x) == hash(y) whenever the walker finds x and y equal under
// the rules (member order, number and string values, ignored paths,
// multisets, tolerance), so unequal hashes prove a difference and equal
// ones pick candidates for equal. Where equality is too loose to hash
// (numbers under a tolerance, arrays matched by key) the hash is coarser.

const (
	tagNull uint64 = iota + 1
	tagTrue
	tagFalse
	tagNumber
	tagString
	tagRaw
	tagObject
	tagKeyed
	tagUnordered
	tagArray
	tagIgnored
)

func fmix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func combine(h, v uint64) uint64 { return fmix(h*0x9e3779b97f4a7c15 + v) }

func (w *walker) hash(d *doc, i int32, depth int, ss int32) uint64 {
	if w.probing > 0 {
		if w.budget <= 0 {
			return 0 // the probe that follows fails on the budget anyway
		}
		w.budget--
	}
	n := &d.nodes[i]
	switch n.kind {
	case tNull:
		return fmix(tagNull)
	case tTrue:
		return fmix(tagTrue)
	case tFalse:
		return fmix(tagFalse)
	case tNumber:
		if w.tol {
			return fmix(tagNumber)
		}
		return numHash(d.raw(i))
	case tString:
		raw := d.raw(i)
		if !n.esc {
			return combine(tagString, maphash.Bytes(w.seed, raw))
		}
		return combine(tagString, maphash.String(w.seed, `"`+unescape(raw[1:len(raw)-1])+`"`))
	}
	if depth >= w.st.maxDepth {
		return combine(tagRaw, maphash.Bytes(w.seed, d.raw(i)))
	}
	if n.kind == tObject {
		return w.objHash(d, i, depth, ss)
	}
	if _, ok := w.rs.keyed(ss); ok {
		return fmix(tagKeyed)
	}
	if w.rs.unordered(ss) {
		gs := w.rs.enter(ss, pseg{isIdx: true, generic: true})
		defer w.rs.leave(gs)
		if w.rs.ignored(gs) {
			return fmix(tagUnordered)
		}
		var sum uint64
		for c, k := i+1, int32(0); k < n.n; c, k = d.nodes[c].next, k+1 {
			sum += fmix(w.hash(d, c, depth+1, gs))
		}
		return combine(tagUnordered, sum)
	}
	h := combine(tagArray, uint64(n.n))
	for c, k := i+1, int32(0); k < n.n; c, k = d.nodes[c].next, k+1 {
		cs := w.rs.enter(ss, pseg{isIdx: true, idx: k})
		if w.rs.ignored(cs) {
			h = combine(h, tagIgnored)
		} else {
			h = combine(h, w.hash(d, c, depth+1, cs))
		}
		w.rs.leave(cs)
	}
	return h
}

// objHash sums its members' hashes, so member order does not count; of
// members with the same name only the last counts, as in object.
func (w *walker) objHash(d *doc, i int32, depth int, ss int32) uint64 {
	base := len(w.hs)
	defer func() { w.hs = w.hs[:base] }()
	for c, k := i+1, int32(0); k < d.nodes[i].n; c, k = d.nodes[c].next, k+1 {
		kb := d.keyBytes(c)
		cs := w.memberState(ss, d, c)
		if !w.rs.ignored(cs) {
			kh := maphash.Bytes(w.seed, kb)
			w.hs = append(w.hs, kh, combine(kh, w.hash(d, c, depth+1, cs)), uint64(c))
		}
		w.rs.leave(cs)
	}
	m := (len(w.hs) - base) / 3
	var sum uint64
	if m <= 32 {
		for x := range m {
			kx := w.hs[base+3*x]
			dup := false
			for y := x + 1; y < m && !dup; y++ {
				dup = w.hs[base+3*y] == kx && bytes.Equal(d.keyBytes(int32(w.hs[base+3*x+2])), d.keyBytes(int32(w.hs[base+3*y+2])))
			}
			if !dup {
				sum += fmix(w.hs[base+3*x+1])
			}
		}
		return combine(tagObject, sum)
	}
	last := make(map[string]int, m)
	for x := range m {
		last[string(d.keyBytes(int32(w.hs[base+3*x+2])))] = x
	}
	for x := range m {
		if last[string(d.keyBytes(int32(w.hs[base+3*x+2])))] == x {
			sum += fmix(w.hs[base+3*x+1])
		}
	}
	return combine(tagObject, sum)
}

// numHash hashes a number by its exact decimal value.
func numHash(raw []byte) uint64 {
	x, ok := parseDecimal(raw)
	if !ok {
		h := uint64(tagRaw)
		for _, c := range raw {
			h = h*131 + uint64(c)
		}
		return combine(tagNumber, h)
	}
	if x.zero {
		return combine(tagNumber, 0)
	}
	h := uint64(x.exp)
	if x.neg {
		h = ^h
	}
	for k := 0; k < x.ndig; k++ {
		h = h*131 + uint64(x.digit(k))
	}
	return combine(tagNumber, h)
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
