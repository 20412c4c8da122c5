package compare

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

// benchDoc builds a JSON API-like document of about size bytes: an object
// with metadata and an array of items, each a small object with a nested
// object and an array. It returns the compact document, a reformatted
// (indented) equivalent, and a copy with the last item's price changed.
func benchDoc(size int) (doc, reformatted, changed []byte) {
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
			items[len(items)-1].Price = "0.01"
			c, _ := json.Marshal(body)
			return b, ind.Bytes(), c
		}
	}
}

var benchSizes = []struct {
	name string
	size int
}{{"1KiB", 1 << 10}, {"16KiB", 16 << 10}, {"256KiB", 256 << 10}}

func jsonResp(b []byte) *envelope.Response {
	return &envelope.Response{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: b, BodySize: int64(len(b))}
}

// BenchmarkPair compares with this package; BenchmarkBaseline does what a
// naive comparator would (decode both sides into any, reflect.DeepEqual)
// on the same inputs, so the two can be read side by side in one run.
// Throughput counts both bodies.
func BenchmarkPair(b *testing.B) {
	for _, sz := range benchSizes {
		doc, reformatted, changed := benchDoc(sz.size)
		for _, c := range []struct {
			name       string
			other      []byte
			wantMatch  bool
			wantDiffAt string
		}{
			{"identical", bytes.Clone(doc), true, ""},
			{"reformatted", reformatted, true, ""},
			{"one-leaf-changed", changed, false, "price"},
		} {
			b.Run(sz.name+"/"+c.name, func(b *testing.B) {
				p, s := jsonResp(doc), jsonResp(c.other)
				if r := Pair(p, s); r.Match != c.wantMatch || len(r.Diffs) > 1 {
					b.Fatalf("unexpected result %+v", r)
				}
				b.SetBytes(int64(len(doc) + len(c.other)))
				b.ReportAllocs()
				for b.Loop() {
					Pair(p, s)
				}
			})
		}
	}
}

func BenchmarkBaseline(b *testing.B) {
	for _, sz := range benchSizes {
		doc, reformatted, changed := benchDoc(sz.size)
		for _, c := range []struct {
			name  string
			other []byte
		}{{"identical", bytes.Clone(doc)}, {"reformatted", reformatted}, {"one-leaf-changed", changed}} {
			b.Run(sz.name+"/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(doc) + len(c.other)))
				b.ReportAllocs()
				for b.Loop() {
					var x, y any
					if err := json.Unmarshal(doc, &x); err != nil {
						b.Fatal(err)
					}
					if err := json.Unmarshal(c.other, &y); err != nil {
						b.Fatal(err)
					}
					_ = reflect.DeepEqual(x, y)
				}
			})
		}
	}
}
