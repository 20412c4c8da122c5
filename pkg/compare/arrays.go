package compare

import (
	"bytes"
	"slices"
)

// Arrays are compared in one of three modes, chosen by the rules (see
// "Arrays" in doc.go): by position (positional), as a multiset (unordered,
// and sameMultiset to tell a reordering from a change) or by a key member
// (keyed). Multisets are paired by hash first (match), so that equality is
// probed only between candidates.

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
