package compare

import (
	"bytes"
	"hash/maphash"
	"sync"
)

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

// addValue records a diff between two values; with Comparer.Shapes it
// carries their shapes.
func (w *walker) addValue(kind string, ai, bi int32) {
	if !w.st.shapes || w.probing > 0 || len(w.st.diffs) >= w.st.maxDiffs {
		w.add(kind)
		return
	}
	na, nb := &w.a.nodes[ai], &w.b.nodes[bi]
	w.add(kind)
	d := &w.st.diffs[len(w.st.diffs)-1]
	d.Before = shapeOf(na.kind, w.a.raw(ai), na.esc)
	d.After = shapeOf(nb.kind, w.b.raw(bi), nb.esc)
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
		w.addValue(KindTypeChanged, ai, bi)
		return
	}
	switch na.kind {
	case tNull:
	case tTrue, tFalse:
		if na.kind != nb.kind {
			w.addValue(KindValueChanged, ai, bi)
		}
	case tNumber:
		if ra, rb := w.a.raw(ai), w.b.raw(bi); !numEqual(ra, rb) && !w.near(ra, rb) {
			w.addValue(KindValueChanged, ai, bi)
		}
	case tString:
		if !strEqual(w.a.raw(ai), na.esc, w.b.raw(bi), nb.esc) {
			w.addValue(KindValueChanged, ai, bi)
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
