package envelope

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
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

func TestEnvelopeBatchRoundTrip(t *testing.T) {
	in := []*Envelope{batchEnvelope(0), batchEnvelope(1), batchEnvelope(2)}
	in[1].Request.Body = nil // an empty body stays nil, as in v1 JSON
	before := *in[0]
	data, err := AppendEnvelopeBatch([]byte("prefix"), in)
	if err != nil {
		t.Fatal(err)
	}
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
}

func TestPairBatchRoundTrip(t *testing.T) {
	in := []*Pair{batchPair(0, true), batchPair(1, false), batchPair(2, true)}
	in[2].Shadow.Body = nil
	data, err := AppendPairBatch(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if in[0].Secondary.Body == nil || in[0].Shadow.Body == nil {
		t.Fatal("encoding modified the pair")
	}
	out, bad, err := DecodePairBatch(data)
	if err != nil || len(bad) != 0 {
		t.Fatalf("decode: %v %v", err, bad)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", out[0], in[0])
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
	raw, _ = appendItem(raw, batchEnvelope(3), nil, nil)
	raw = append(raw, 3, '{', '"', 'x', 0)
	out, bad, err = DecodeEnvelopeBatch(raw)
	if err != nil || len(out) != 1 || len(bad) != 1 || !strings.Contains(bad[0].Error(), "not valid JSON") {
		t.Fatalf("got %v %v %v", out, bad, err)
	}
	pair := batchPair(0, false)
	raw, _ = appendItem(append(append([]byte(nil), batchMagic...), 1), pair, nil, nil)
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
		"framing v2":   []byte{'D', 'L', 'B', 2, 0},
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
	env, _ := AppendEnvelopeBatch(nil, []*Envelope{batchEnvelope(0)})
	pairs, _ := AppendPairBatch(nil, []*Pair{batchPair(0, true)})
	f.Add(env)
	f.Add(pairs)
	f.Fuzz(func(t *testing.T, data []byte) {
		envs, bad, err := DecodeEnvelopeBatch(data)
		if err != nil && (len(envs) > 0 || len(bad) > 0) {
			t.Fatal("items returned with a framing error")
		}
		for _, b := range bad {
			if !errors.Is(b, ErrMalformed) {
				t.Fatalf("item error %v does not wrap ErrMalformed", b)
			}
		}
		ps, _, err := DecodePairBatch(data)
		if err == nil {
			// What decodes encodes back to something that decodes the same.
			again, err := AppendPairBatch(nil, ps)
			if err != nil {
				t.Fatal(err)
			}
			back, bad, err := DecodePairBatch(again)
			if err != nil || len(bad) != 0 || len(back) != len(ps) {
				t.Fatalf("re-encoded batch: %d pairs, %v, %v (had %d)", len(back), bad, err, len(ps))
			}
		}
	})
}

// BenchmarkBatch compares a batch of 64 pairs with 64 v1 JSON documents
// (base64 bodies): encode and decode, per pair.
func BenchmarkBatch(b *testing.B) {
	pairs := make([]*Pair, 64)
	for i := range pairs {
		pairs[i] = batchPair(i, i%2 == 0)
		pairs[i].Envelope.Primary.Body = []byte(strings.Repeat(`{"id":1,"name":"x"}`, 50))
		pairs[i].Shadow.Body = pairs[i].Envelope.Primary.Body
	}
	b.Run("v1-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, p := range pairs {
				data, _ := json.Marshal(p)
				if _, err := DecodePair(data); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pairs)), "ns/pair")
	})
	b.Run("batch", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = AppendPairBatch(buf[:0], pairs)
			if _, _, err := DecodePairBatch(buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pairs)), "ns/pair")
	})
}
