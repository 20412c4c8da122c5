package compare

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

// benchDoc builds a JSON API-like document of about size bytes: an object
// with metadata and an array of items, each a small object with a nested
// object and an array. It returns the compact document, a reformatted
// (indented) equivalent, a copy with the last item's price changed, and a
// copy with the items in reverse order.
func benchDoc(size int) (doc, reformatted, changed, reordered []byte) {
	type item struct {
		ID     int               `json:"id"`
		Name   string            `json:"name"`
		Price  json.Number       `json:"price"`
		Tags   []string          `json:"tags"`
		Active bool              `json:"active"`
		Owner  map[string]any    `json:"owner"`
		Attrs  map[string]string `json:"attrs"`
	}
	var items []item
	body := map[string]any{"page": 1, "total": 0, "next": nil}
	for i := 0; ; i++ {
		items = append(items, item{
			ID: 1000 + i, Name: fmt.Sprintf("item number %d", i), Price: json.Number(fmt.Sprintf("%d.%02d", i*3, i%100)),
			Tags: []string{"a", "b\u00e9"}, Active: i%2 == 0,
			Owner: map[string]any{"id": i * 7, "email": fmt.Sprintf("u%d@example.com", i)},
			Attrs: map[string]string{"color": "red", "size-x": "L"},
		})
		body["items"], body["total"] = items, len(items)
		b, _ := json.Marshal(body)
		if len(b) >= size {
			var ind bytes.Buffer
			_ = json.Indent(&ind, b, "", "  ")
			rev := slices.Clone(items)
			slices.Reverse(rev)
			body["items"] = rev
			r, _ := json.Marshal(body)
			body["items"] = items
			items[len(items)-1].Price = "0.01"
			c, _ := json.Marshal(body)
			return b, ind.Bytes(), c, r
		}
	}
}

var benchSizes = []struct {
	name string
	size int
}{{"1KiB", 1 << 10}, {"16KiB", 16 << 10}, {"256KiB", 256 << 10}}

type benchCase struct {
	name      string
	doc       []byte
	other     []byte
	wantMatch bool
	wantKind  string // kind of the one diff expected, if any
}

func benchCases(size int) []benchCase {
	doc, reformatted, changed, reordered := benchDoc(size)
	return []benchCase{
		{"identical", doc, bytes.Clone(doc), true, ""},
		{"reformatted", doc, reformatted, true, ""},
		{"one-leaf-changed", doc, changed, false, KindValueChanged},
		{"arrays-reordered", doc, reordered, false, KindArrayOrder},
	}
}

func jsonResp(b []byte) *envelope.Response {
	return &envelope.Response{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: b, BodySize: int64(len(b))}
}

// baseline is what a naive comparator does: decode both sides into any
// and compare with reflect.DeepEqual.
func baseline(b testing.TB, x, y []byte) bool {
	var vx, vy any
	if err := json.Unmarshal(x, &vx); err != nil {
		b.Fatal(err)
	}
	if err := json.Unmarshal(y, &vy); err != nil {
		b.Fatal(err)
	}
	return reflect.DeepEqual(vx, vy)
}

// baselineNs holds the baseline's ns/op per case, measured in this run by
// BenchmarkBaseline (which runs first) or else on demand.
var baselineNs sync.Map

// BenchmarkBaseline measures the naive comparator on the inputs of
// BenchmarkPair. Throughput counts both bodies.
func BenchmarkBaseline(b *testing.B) {
	for _, sz := range benchSizes {
		for _, c := range benchCases(sz.size) {
			name := sz.name + "/" + c.name
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(c.doc) + len(c.other)))
				b.ReportAllocs()
				for b.Loop() {
					baseline(b, c.doc, c.other)
				}
				baselineNs.Store(name, float64(b.Elapsed().Nanoseconds())/float64(b.N))
			})
		}
	}
}

// BenchmarkPair compares with this package on the same inputs as
// BenchmarkBaseline and reports "x-baseline": how many times faster than
// the baseline measured in the same run.
func BenchmarkPair(b *testing.B) {
	for _, sz := range benchSizes {
		for _, c := range benchCases(sz.size) {
			name := sz.name + "/" + c.name
			b.Run(name, func(b *testing.B) {
				benchPair(b, name, Comparer{}, c)
			})
		}
	}
}

// BenchmarkPairWithRules is BenchmarkPair with a typical set of rules: an
// ignored path at any depth, an unordered array and an array matched by
// key, so that every node is checked against the rules.
func BenchmarkPairWithRules(b *testing.B) {
	rs := compiled(b, Rules{IgnorePaths: []string{"$..email", "$.next"}, UnorderedArrays: []string{"$.items[*].tags"},
		ArrayKeys: map[string]string{"$.items": "id"}, CompareHeaders: []string{"X-Version"}})
	for _, sz := range benchSizes {
		for _, c := range benchCases(sz.size) {
			name := sz.name + "/" + c.name
			b.Run(name, func(b *testing.B) {
				benchPair(b, name, Comparer{Rules: rs}, c)
			})
		}
	}
}

func benchPair(b *testing.B, name string, cmp Comparer, c benchCase) {
	p, s := jsonResp(c.doc), jsonResp(c.other)
	r := cmp.Pair(p, s)
	if r.Match != c.wantMatch || (c.wantKind != "" && (len(r.Diffs) != 1 || r.Diffs[0].Kind != c.wantKind)) {
		b.Fatalf("unexpected result %+v", r)
	}
	base, ok := baselineNs.Load(name)
	if !ok {
		// testing.Benchmark cannot run inside a benchmark: time it here.
		n, start := 0, time.Now()
		for n < 3 || time.Since(start) < 500*time.Millisecond {
			baseline(b, c.doc, c.other)
			n++
		}
		base = float64(time.Since(start).Nanoseconds()) / float64(n)
		baselineNs.Store(name, base)
	}
	b.SetBytes(int64(len(c.doc) + len(c.other)))
	b.ReportAllocs()
	for b.Loop() {
		cmp.Pair(p, s)
	}
	if b.N > 0 && b.Elapsed() > 0 {
		b.ReportMetric(base.(float64)/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "x-baseline")
	}
}
