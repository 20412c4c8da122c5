package compare

import (
	"strconv"
	"strings"
	"testing"
)

func repeatJSON(n int, elem func(i int) string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(elem(i))
	}
	b.WriteByte(']')
	return b.String()
}

// TestBoundedWork runs the inputs that would make a naive matcher
// quadratic or worse; each must finish quickly (the test's own timeout
// catches a regression) with the result and flags documented.
func TestBoundedWork(t *testing.T) {
	const n = 50000
	ones := repeatJSON(n, func(int) string { return "1" })
	onesButOne := "[2," + ones[3:]
	t.Run("equal elements pair in linear time", func(t *testing.T) {
		c := Comparer{Rules: compiled(t, Rules{UnorderedArrays: []string{"$"}})}
		if r := c.Pair(resp(200, js, ones), resp(200, js, " "+ones)); !r.Match || r.Truncated {
			t.Fatalf("%+v", r)
		}
		r := c.Pair(resp(200, js, ones), resp(200, js, onesButOne))
		if len(r.Diffs) != 2 || r.Diffs[0] != (Diff{Path: "$[49999]", Generalized: "$[*]", Kind: KindMissingField}) || r.Diffs[1] != (Diff{Path: "$[0]", Generalized: "$[*]", Kind: KindExtraField}) {
			t.Fatalf("%+v", r.Diffs)
		}
	})
	t.Run("coarse hashes under a tolerance hit the work bound", func(t *testing.T) {
		c := Comparer{MaxDiffs: 5, Rules: compiled(t, Rules{UnorderedArrays: []string{"$"}, NumericTolerance: &Tolerance{Absolute: 0.1}})}
		a := repeatJSON(n, func(i int) string { return strconv.Itoa(i) })
		b := repeatJSON(n, func(i int) string { return strconv.Itoa(i + n) })
		r := c.Pair(resp(200, js, a), resp(200, js, b))
		if r.Match || !r.Truncated || !strings.Contains(r.Note, "work bound of array matching reached (first at $)") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("reorder check on a long array", func(t *testing.T) {
		a := repeatJSON(n, func(i int) string { return `{"id":` + strconv.Itoa(i) + `}` })
		b := repeatJSON(n, func(i int) string { return `{"id":` + strconv.Itoa(n-1-i) + `}` })
		if r := Pair(resp(200, js, a), resp(200, js, b)); len(r.Diffs) != 1 || r.Diffs[0].Kind != KindArrayOrder {
			t.Fatalf("%+v", r.Diffs)
		}
	})
	t.Run("keyed long array", func(t *testing.T) {
		c := Comparer{Rules: compiled(t, Rules{ArrayKeys: map[string]string{"$": "id"}})}
		a := repeatJSON(n, func(i int) string { return `{"id":` + strconv.Itoa(i) + `}` })
		b := "[" + `{"id":-1},` + a[1:]
		if r := c.Pair(resp(200, js, a), resp(200, js, b)); len(r.Diffs) != 1 || r.Diffs[0] != (Diff{Path: "$[0]", Generalized: "$[*]", Kind: KindExtraField}) {
			t.Fatalf("%+v", r.Diffs)
		}
	})
	t.Run("nested arrays all reordered", func(t *testing.T) {
		a, b := "1", "1"
		for i := range 60 {
			a = "[" + a + "," + strconv.Itoa(i) + "]"
			b = "[" + strconv.Itoa(i) + "," + b + "]"
		}
		// Each level holds a number and an array that differs below: not
		// the same elements, so by position.
		r := Pair(resp(200, js, a), resp(200, js, b))
		if len(r.Diffs) != 2 || r.Diffs[0] != (Diff{Path: "$[0]", Generalized: "$[*]", Kind: KindTypeChanged}) {
			t.Fatalf("%+v", r.Diffs)
		}
		c := Comparer{Rules: compiled(t, Rules{UnorderedArrays: []string{"$..*"}})}
		if r := c.Pair(resp(200, js, a), resp(200, js, b)); !r.Match {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("repeated form fields", func(t *testing.T) {
		a := strings.Repeat("t=1&", n) + "t=2"
		b := "t=2&" + strings.Repeat("t=1&", n)
		b = b[:len(b)-1]
		r := Pair(resp(200, form, a), resp(200, form, b))
		if len(r.Diffs) != 1 || r.Diffs[0] != (Diff{Path: "$.t", Generalized: "$.t", Kind: KindArrayOrder}) {
			t.Fatalf("%+v", r.Diffs)
		}
		c := Comparer{Rules: compiled(t, Rules{UnorderedArrays: []string{"$.t"}})}
		if r := c.Pair(resp(200, form, a), resp(200, form, b)); !r.Match {
			t.Fatalf("%+v", r)
		}
	})
}
