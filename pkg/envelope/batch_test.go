package envelope

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// batchEnvelope has every field set, binary bodies included, so that a
// round trip that loses any of them fails.
func batchEnvelope(i int) *Envelope {
	return &Envelope{V: Version, ID: NewID(), LaunchID: "l1", TapID: "tap-a",
		ReceivedAt: time.Unix(1_800_000_000+int64(i), 123456789).UTC(),
		Request: Request{Method: "POST", Path: "/orders/" + strings.Repeat("x", i), RawQuery: "a=1", Host: "shop",
			Headers: http.Header{"Content-Type": {"application/json"}}, Body: []byte{'{', 0, 0xff, '}'}, BodySize: 4},
		Primary: Response{Status: 201, Headers: http.Header{"X-A": {"1", "2"}}, Body: []byte("\x00binary\xfe"), BodySize: 9, LatencyUS: 1830},
	}
}

func batchPair(i int, secondary bool) *Pair {
	p := &Pair{V: Version, Envelope: *batchEnvelope(i), RunnerID: "r1", ReplayedAt: time.Unix(1_800_000_001, 5).UTC(),
		Shadow: Outcome{Response: Response{Status: 200, Body: []byte("shadow\x00"), BodySize: 7, BodyTruncated: true, LatencyUS: 9}}}
	if secondary {
		p.Secondary = &Outcome{Response: Response{Status: 502}, Error: "refused", ErrorKind: ErrorRefused}
		p.Secondary.Body = []byte("sec")
	}
	return p
}

// appendEnvelopeBatchV1 and appendPairBatchV1 write framing version 1,
// as taps in other languages may still do: the headers in the JSON.
func appendEnvelopeBatchV1(dst []byte, envs []*Envelope) []byte {
	dst = append(dst, 'D', 'L', 'B', batchV1)
	dst = binary.AppendUvarint(dst, uint64(len(envs)))
	for _, e := range envs {
		meta := *e
		meta.Request.Body, meta.Primary.Body = nil, nil
		dst, _ = appendItem(dst, &meta, [][]byte{e.Request.Body, e.Primary.Body}, nil)
	}
	return dst
}

func appendPairBatchV1(dst []byte, pairs []*Pair) []byte {
	dst = append(dst, 'D', 'L', 'B', batchV1)
	dst = binary.AppendUvarint(dst, uint64(len(pairs)))
	for _, p := range pairs {
		meta := *p
		meta.Envelope.Request.Body, meta.Envelope.Primary.Body, meta.Shadow.Body = nil, nil, nil
		bodies := [][]byte{p.Envelope.Request.Body, p.Envelope.Primary.Body, p.Shadow.Body}
		if p.Secondary != nil {
			sec := *p.Secondary
			sec.Body = nil
			meta.Secondary = &sec
			bodies = append(bodies, p.Secondary.Body)
		}
		dst, _ = appendItem(dst, &meta, bodies, nil)
	}
	return dst
}

// writers are the framing versions a test runs over.
var writers = []struct {
	name     string
	envelope func([]byte, []*Envelope) []byte
	pair     func([]byte, []*Pair) []byte
}{
	{"v1", appendEnvelopeBatchV1, appendPairBatchV1},
	{"v2", func(dst []byte, envs []*Envelope) []byte {
		dst, err := AppendEnvelopeBatch(dst, envs)
		if err != nil {
			panic(err)
		}
		return dst
	}, func(dst []byte, pairs []*Pair) []byte {
		dst, err := AppendPairBatch(dst, pairs)
		if err != nil {
			panic(err)
		}
		return dst
	}},
}

func TestEnvelopeBatchRoundTrip(t *testing.T) {
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			in := []*Envelope{batchEnvelope(0), batchEnvelope(1), batchEnvelope(2)}
			in[1].Request.Body = nil // an empty body stays nil, as in v1 JSON
			in[2].Primary.Headers = nil
			before := *in[0]
			data := w.envelope([]byte("prefix"), in)
			if !reflect.DeepEqual(*in[0], before) {
				t.Fatal("encoding modified the envelope")
			}
			if !strings.HasPrefix(string(data), "prefix") {
				t.Fatal("AppendEnvelopeBatch did not append to dst")
			}
			out, bad, err := DecodeEnvelopeBatch(data[len("prefix"):])
			if err != nil || len(bad) != 0 {
				t.Fatalf("decode: %v %v", err, bad)
			}
			if !reflect.DeepEqual(out, in) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", out[0], in[0])
			}
			// The bodies travel raw: a batch is smaller than the v1 JSON documents.
			var single int
			for _, e := range in {
				js, _ := json.Marshal(e)
				single += len(js)
			}
			if len(data)-len("prefix") >= single {
				t.Fatalf("batch of %d bytes is not smaller than %d bytes of v1 JSON", len(data), single)
			}
		})
	}
}

func TestPairBatchRoundTrip(t *testing.T) {
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			in := []*Pair{batchPair(0, true), batchPair(1, false), batchPair(2, true)}
			in[2].Shadow.Body = nil
			in[0].Secondary.Headers = http.Header{"Retry-After": {"1"}}
			data := w.pair(nil, in)
			if in[0].Secondary.Body == nil || in[0].Shadow.Body == nil || in[0].Secondary.Headers == nil || in[0].Envelope.Request.Headers == nil {
				t.Fatal("encoding modified the pair")
			}
			out, bad, err := DecodePairBatch(data)
			if err != nil || len(bad) != 0 {
				t.Fatalf("decode: %v %v", err, bad)
			}
			if !reflect.DeepEqual(out, in) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", out[0], in[0])
			}
		})
	}
}

func TestBatchBadItemsAlone(t *testing.T) {
	good, broken := batchEnvelope(0), batchEnvelope(1)
	broken.LaunchID = ""
	data, err := AppendEnvelopeBatch(nil, []*Envelope{good, broken, batchEnvelope(2)})
	if err != nil {
		t.Fatal(err)
	}
	out, bad, err := DecodeEnvelopeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || len(bad) != 1 {
		t.Fatalf("got %d envelopes and %d bad items, want 2 and 1", len(out), len(bad))
	}
	if bad[0].Index != 1 || bad[0].ID != broken.ID || !errors.Is(bad[0], ErrMalformed) || !strings.Contains(bad[0].Error(), "launch_id") {
		t.Fatalf("bad item = %+v (%v)", bad[0], bad[0])
	}

	// An item's JSON that is not JSON, and a pair with the wrong number of
	// bodies, are item errors too.
	var raw []byte
	raw = append(raw, batchMagic...)
	raw = append(raw, 2)
	e3 := batchEnvelope(3)
	meta := *e3
	meta.Request.Headers, meta.Primary.Headers = nil, nil
	raw, _ = appendItem(raw, &meta, [][]byte{nil, nil}, []http.Header{e3.Request.Headers, e3.Primary.Headers})
	raw = append(raw, 3, '{', '"', 'x', 0)
	out, bad, err = DecodeEnvelopeBatch(raw)
	if err != nil || len(out) != 1 || len(bad) != 1 || !strings.Contains(bad[0].Error(), "not valid JSON") {
		t.Fatalf("got %v %v %v", out, bad, err)
	}
	pair := batchPair(0, false)
	raw, _ = appendItem(append(append([]byte(nil), batchMagic...), 1), pair, [][]byte{nil, nil}, []http.Header{nil, nil})
	if _, bad, err := DecodePairBatch(raw); err != nil || len(bad) != 1 || !strings.Contains(bad[0].Error(), "want 3") {
		t.Fatalf("pair with 2 bodies: %v %v", bad, err)
	}
}

func TestBatchFramingErrors(t *testing.T) {
	data, err := AppendPairBatch(nil, []*Pair{batchPair(0, true), batchPair(1, false)})
	if err != nil {
		t.Fatal(err)
	}
	// Every truncation, and trailing garbage, fails the whole message
	// with ErrMalformed (and never panics).
	for n := 0; n < len(data); n++ {
		if _, _, err := DecodePairBatch(data[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated at %d of %d: err = %v", n, len(data), err)
		}
	}
	if _, _, err := DecodePairBatch(append(data[:len(data):len(data)], 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
	for name, raw := range map[string][]byte{
		"v1 JSON":      []byte(`{"v":1}`),
		"huge count":   append(append([]byte(nil), batchMagic...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"many bodies":  append(append([]byte(nil), batchMagic...), 1, 2, '{', '}', 9),
		"framing v3":   []byte{'D', 'L', 'B', 3, 0},
		"framing v0":   []byte{'D', 'L', 'B', 0, 0},
		"bad varint":   append(append([]byte(nil), batchMagic...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		"long payload": append(append([]byte(nil), batchMagic...), 1, 100, '{'),
	} {
		if _, _, err := DecodeEnvelopeBatch(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestBatchID(t *testing.T) {
	a := BatchID([]string{"x", "y"})
	if a != BatchID([]string{"x", "y"}) || !strings.HasPrefix(a, "batch-") {
		t.Fatalf("BatchID not stable: %s", a)
	}
	for _, ids := range [][]string{{"y", "x"}, {"xy"}, {"x", "y", ""}, {"x"}} {
		if BatchID(ids) == a {
			t.Fatalf("BatchID(%q) collides with BatchID([x y])", ids)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	withHeaders := batchPair(1, true)
	withHeaders.Envelope.Request.Headers, withHeaders.Shadow.Headers, withHeaders.Secondary.Headers = browserRequest(), apiResponse(), http.Header{"A": {}, "": {""}}
	env, _ := AppendEnvelopeBatch(nil, []*Envelope{batchEnvelope(0)})
	pairs, _ := AppendPairBatch(nil, []*Pair{batchPair(0, true), withHeaders})
	f.Add(env)
	f.Add(pairs)
	f.Add(appendEnvelopeBatchV1(nil, []*Envelope{batchEnvelope(0)}))
	f.Add(appendPairBatchV1(nil, []*Pair{batchPair(0, false), withHeaders}))
	f.Add(v2Item(append(append([]byte(nil), batchMagic...), 1), batchEnvelope(0), rawSet(1, 1<<40, 1, "A", 1, 1, "x"), rawSet()))
	f.Add(v2Item(append(append([]byte(nil), batchMagic...), 1), batchEnvelope(0), rawSet(), rawSet(1, 1<<22, 1, "A", 1, 1, "x")))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Decoding allocates in proportion to the data, never to what a
		// count in it claims. (runtime/metrics, unlike ReadMemStats, does
		// not stop the world: the fuzzer keeps its pace.)
		allocs := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
		metrics.Read(allocs)
		before := allocs[0].Value.Uint64()
		envs, bad, err := DecodeEnvelopeBatch(data)
		metrics.Read(allocs)
		if grew := allocs[0].Value.Uint64() - before; grew > 2048*uint64(len(data))+1<<20 {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(data), grew)
		}
		if err != nil && (len(envs) > 0 || len(bad) > 0) {
			t.Fatal("items returned with a framing error")
		}
		for _, b := range bad {
			if !errors.Is(b, ErrMalformed) {
				t.Fatalf("item error %v does not wrap ErrMalformed", b)
			}
			if _, err := BatchItem(data, b.Index); err != nil {
				t.Fatalf("no dead letter for item %d: %v", b.Index, err)
			}
		}
		ps, _, err := DecodePairBatch(data)
		if err == nil {
			// What decodes encodes back to something that decodes the
			// same, headers included.
			again, err := AppendPairBatch(nil, ps)
			if err != nil {
				t.Fatal(err)
			}
			back, bad, err := DecodePairBatch(again)
			if err != nil || len(bad) != 0 || len(back) != len(ps) {
				t.Fatalf("re-encoded batch: %d pairs, %v, %v (had %d)", len(back), bad, err, len(ps))
			}
			for i, p := range ps {
				q := back[i]
				if !reflect.DeepEqual(p.Envelope.Request.Headers, q.Envelope.Request.Headers) || !reflect.DeepEqual(p.Shadow.Headers, q.Shadow.Headers) ||
					(p.Secondary != nil && !reflect.DeepEqual(p.Secondary.Headers, q.Secondary.Headers)) {
					t.Fatalf("pair %d: headers changed in a round trip", i)
				}
			}
		}
	})
}

// BenchmarkBatch compares, per pair, the encoding and decoding of 64
// pairs with realistic headers (a browser's request, an API's responses)
// and 1 KiB bodies: as 64 single JSON documents (base64 bodies), as a
// framing version 1 batch (headers in the JSON) and as a version 2 batch
// (header sets beside the bodies).
func BenchmarkBatch(b *testing.B) {
	body := []byte(strings.Repeat(`{"id":1,"name":"x"}`, 54)[:1024])
	pairs := make([]*Pair, 64)
	for i := range pairs {
		p := batchPair(i, i%2 == 0)
		p.Envelope.Request.Headers = browserRequest()
		p.Envelope.Primary.Headers, p.Shadow.Headers = apiResponse(), apiResponse()
		p.Envelope.Request.Body, p.Envelope.Primary.Body, p.Shadow.Body = body, body, body
		if p.Secondary != nil {
			p.Secondary.Headers, p.Secondary.Body = apiResponse(), body
		}
		pairs[i] = p
	}
	perPair := func(b *testing.B, f func()) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for b.Loop() {
			f()
		}
		runtime.ReadMemStats(&after)
		n := float64(b.N * len(pairs))
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/pair")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/pair")
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, "B/pair")
	}
	docs := make([][]byte, len(pairs))
	for i, p := range pairs {
		docs[i], _ = json.Marshal(p)
	}
	b.Run("json/encode", func(b *testing.B) {
		perPair(b, func() {
			for _, p := range pairs {
				if _, err := json.Marshal(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("json/decode", func(b *testing.B) {
		perPair(b, func() {
			for _, d := range docs {
				if _, err := DecodePair(d); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	for _, w := range writers {
		var buf []byte
		b.Run(w.name+"/encode", func(b *testing.B) {
			perPair(b, func() { buf = w.pair(buf[:0], pairs) })
		})
		data := w.pair(nil, pairs)
		b.Run(w.name+"/decode", func(b *testing.B) {
			perPair(b, func() {
				if ps, bad, err := DecodePairBatch(data); err != nil || len(bad) != 0 || len(ps) != len(pairs) {
					b.Fatal(err, bad)
				}
			})
		})
	}
}
