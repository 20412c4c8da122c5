package compare

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// formField is one field of a form-urlencoded body with its values in
// order.
type formField struct {
	name string
	vals []string
}

// parseForm splits a form-urlencoded body on "&" into fields in order of
// first appearance; "+" is a space, percent escapes must be valid. A part
// without "=" is a field with an empty value; empty parts are skipped.
func parseForm(b []byte) ([]formField, error) {
	var fields []formField
	idx := map[string]int{}
	for part := range strings.SplitSeq(string(b), "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return nil, err
		}
		if v, err = url.QueryUnescape(v); err != nil {
			return nil, err
		}
		i, ok := idx[k]
		if !ok {
			i = len(fields)
			idx[k] = i
			fields = append(fields, formField{name: k})
		}
		fields[i].vals = append(fields[i].vals, v)
	}
	return fields, nil
}

// form compares two form-urlencoded bodies field by field; false if either
// does not parse (nothing was compared then).
func (s *state) form(pa, pb []byte) bool {
	fa, errA := parseForm(pa)
	fb, errB := parseForm(pb)
	if !s.parsed("form-urlencoded", errA, errB) {
		return false
	}
	rs := rstate{m: s.rs.m}
	root := rs.root()
	inB := make(map[string]int, len(fb))
	for j, f := range fb {
		inB[f.name] = j
	}
	inA := make(map[string]bool, len(fa))
	for _, f := range fa {
		inA[f.name] = true
		cs := rs.enter(root, pseg{key: []byte(f.name)})
		if !rs.ignored(cs) {
			path := fieldPath(f.name)
			if j, ok := inB[f.name]; ok {
				s.formValues(&rs, cs, path, f.vals, fb[j].vals)
			} else {
				s.add(path, path, KindMissingField)
			}
		}
		rs.leave(cs)
	}
	for _, f := range fb {
		if inA[f.name] {
			continue
		}
		cs := rs.enter(root, pseg{key: []byte(f.name)})
		if !rs.ignored(cs) {
			path := fieldPath(f.name)
			s.add(path, path, KindExtraField)
		}
		rs.leave(cs)
	}
	return true
}

func fieldPath(name string) string {
	var b strings.Builder
	b.WriteByte('$')
	writeKey(&b, name)
	return b.String()
}

// formValues compares the values of one field: a string when it occurs
// once on both sides, else an array of its values, compared like a JSON
// array of strings (positional with array_order detection, or as a
// multiset under unordered_arrays).
func (s *state) formValues(rs *rstate, cs int32, path string, va, vb []string) {
	if len(va) == 1 && len(vb) == 1 {
		if va[0] != vb[0] {
			s.add(path, path, KindValueChanged)
		}
		return
	}
	elem := func(k int, generic bool, kind string) {
		es := rs.enter(cs, pseg{isIdx: true, idx: int32(k), generic: generic})
		if !rs.ignored(es) {
			s.add(path+"["+strconv.Itoa(k)+"]", path+"[*]", kind)
		}
		rs.leave(es)
	}
	if rs.unordered(cs) {
		left := make(map[string][]int, len(vb))
		for j, v := range vb {
			left[v] = append(left[v], j)
		}
		used := make([]bool, len(vb))
		var missing []int
		for i, v := range va {
			if js := left[v]; len(js) > 0 {
				used[js[0]] = true
				left[v] = js[1:]
			} else {
				missing = append(missing, i)
			}
		}
		for _, i := range missing {
			elem(i, true, KindMissingField)
		}
		for j := range vb {
			if !used[j] {
				elem(j, true, KindExtraField)
			}
		}
		return
	}
	if len(va) != len(vb) {
		s.add(path, path, KindArrayLength)
		for k := range max(len(va), len(vb)) {
			switch {
			case k >= len(vb):
				elem(k, false, KindMissingField)
			case k >= len(va):
				elem(k, false, KindExtraField)
			case va[k] != vb[k]:
				elem(k, false, KindValueChanged)
			}
		}
		return
	}
	var da, db []string
	var at []int
	for k := range va {
		if va[k] != vb[k] {
			da, db, at = append(da, va[k]), append(db, vb[k]), append(at, k)
		}
	}
	if len(at) >= 2 {
		slices.Sort(da)
		slices.Sort(db)
		if slices.Equal(da, db) {
			s.add(path, path, KindArrayOrder)
			return
		}
	}
	for _, k := range at {
		elem(k, false, KindValueChanged)
	}
}
