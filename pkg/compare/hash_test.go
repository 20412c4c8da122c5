package compare

import "testing"

// rootHashes hashes the whole of x and of y as one walker does under rs.
// One walker for both: a walker's hash seed is its own (a pooled walker
// may be another one, and under -race sync.Pool drops items at random), so
// only hashes of one walker compare.
func rootHashes(t *testing.T, rs *Ruleset, x, y string) (uint64, uint64) {
	t.Helper()
	var dx, dy doc
	for _, p := range []struct {
		d   *doc
		src string
	}{{&dx, x}, {&dy, y}} {
		if err := p.d.parse([]byte(p.src)); err != nil {
			t.Fatalf("parse(%s): %v", p.src, err)
		}
	}
	st := &state{maxDiffs: DefaultMaxDiffs, maxDepth: DefaultMaxDepth, rs: orDefault(rs)}
	w := newWalker(st, &dx, &dy)
	defer w.release()
	root := w.rs.root()
	defer w.rs.leave(root)
	return w.hash(&dx, 0, 0, root), w.hash(&dy, 0, 0, root)
}

// TestHash checks the promise multiset matching relies on: values the
// walker finds equal hash equal, and the hash tells apart values that
// differ where it is meant to be exact.
func TestHash(t *testing.T) {
	unordered := compiled(t, Rules{UnorderedArrays: []string{"$.a"}})
	ignored := compiled(t, Rules{IgnorePaths: []string{"$.x", "$.l[1]"}})
	tolerant := compiled(t, Rules{NumericTolerance: &Tolerance{Absolute: 0.5}})
	tests := []struct {
		rs    *Ruleset
		x, y  string
		equal bool
	}{
		{nil, `{"a":1,"b":[true,null,"s"]}`, `{ "b" : [true, null, "s"], "a" : 1 }`, true},
		{nil, `[1, 1.0, 1e0, -0, 0.5]`, `[1e0, 10E-1, 1, 0, 5e-1]`, true},
		{nil, `"\u0041\n"`, `"A\n"`, true},
		{nil, `{"a":1,"a":2}`, `{"a":2}`, true},
		{nil, `[1,2]`, `[2,1]`, false},
		{nil, `{"a":"1"}`, `{"a":1}`, false},
		{nil, `[true]`, `[false]`, false},
		{nil, `12345678901234567890`, `12345678901234567891`, false},
		{unordered, `{"a":[1,[2,3],{"b":4}]}`, `{"a":[{"b":4},1,[2,3]]}`, true},
		{unordered, `{"a":[1,2]}`, `{"a":[1,3]}`, false},
		{ignored, `{"x":1,"l":[1,2],"y":2}`, `{"y":2,"l":[1,5],"x":[]}`, true},
		{ignored, `{"l":[1,2]}`, `{"l":[2,2]}`, false},
		{tolerant, `[1.0, 2]`, `[1.4, 2.3]`, true},
	}
	for _, tt := range tests {
		hx, hy := rootHashes(t, tt.rs, tt.x, tt.y)
		if (hx == hy) != tt.equal {
			t.Errorf("hash(%s) == hash(%s) is %v, want %v", tt.x, tt.y, hx == hy, tt.equal)
		}
	}
}
