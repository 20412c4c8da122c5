package compare

import (
	"bytes"
	"hash/maphash"
)

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
