package envelope

import (
	"encoding/binary"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// browserRequest and apiResponse are realistic header maps: what a
// browser sends (~10 fields) and what an API answers (~6).
func browserRequest() http.Header {
	return http.Header{
		"Accept":          {"application/json, text/plain, */*"},
		"Accept-Encoding": {"gzip, deflate, br"},
		"Accept-Language": {"en-GB,en;q=0.9,fr;q=0.8"},
		"Authorization":   {"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"},
		"Cookie":          {"session=7c1f0e2a9b; theme=dark", "consent=1"},
		"Origin":          {"https://shop.example.com"},
		"Referer":         {"https://shop.example.com/cart"},
		"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
		"X-Request-Id":    {"4f1c2d7e-8a9b-4c3d-9e8f-0a1b2c3d4e5f"},
		"Content-Type":    {"application/json"},
	}
}

func apiResponse() http.Header {
	return http.Header{
		"Cache-Control":  {"no-store"},
		"Content-Type":   {"application/json; charset=utf-8"},
		"Date":           {"Fri, 27 Nov 2026 11:10:40 GMT"},
		"Etag":           {`W/"5e-1a2b3c"`},
		"Set-Cookie":     {"a=1; Path=/; HttpOnly", "b=2; Path=/; Secure"},
		"Vary":           {"Accept-Encoding", "Origin"},
		"Content-Length": {"1024"},
	}
}

// oddHeaders are the header maps a round trip must keep: empty, nil,
// several values, empty values and fields, unicode and bytes that are
// not UTF-8, names that are not canonical or not tokens, and more fields
// than a map's first group holds.
func oddHeaders() []http.Header {
	many := http.Header{}
	for i := range 40 {
		many[strings.Repeat("N", i+1)] = []string{strings.Repeat("v", i*10)}
	}
	return []http.Header{
		nil,
		{},
		{"X-Multi": {"1", "2", "3"}, "X-One": {"x"}},
		{"X-Empty-Value": {""}, "X-No-Values": {}, "": {"empty name"}},
		{"X-Unicode": {"héllo wörld ✓ 日本語 🚀"}, "X-Bytes": {"\x00\x01\x7f\r\n\"\\{}<>&\u2028"}},
		{"lower-case": {"a"}, "Not A Token:": {"b"}, "X-Big": {strings.Repeat("z", 70000)}},
		many,
		browserRequest(),
		apiResponse(),
	}
}

// normalized is what a header decodes to: an empty map is nil, as a v1
// document without "headers" (omitempty) gives.
func normalized(h http.Header) http.Header {
	if len(h) == 0 {
		return nil
	}
	return h
}

// Every odd header map, on every message of envelopes and pairs (with and
// without a secondary), decodes from version 2 to what it was, and to
// what the same data written as version 1 decodes to.
func TestHeaderSetsRoundTrip(t *testing.T) {
	hs := oddHeaders()
	var envs, wantEnvs []*Envelope
	var pairs, wantPairs []*Pair
	for i := range hs {
		e := batchEnvelope(i)
		e.Request.Headers, e.Primary.Headers = hs[i], hs[(i+1)%len(hs)]
		envs = append(envs, e)
		w := *e
		w.Request.Headers, w.Primary.Headers = normalized(w.Request.Headers), normalized(w.Primary.Headers)
		wantEnvs = append(wantEnvs, &w)

		p := batchPair(i, i%2 == 0)
		p.Envelope.Request.Headers, p.Envelope.Primary.Headers, p.Shadow.Headers = hs[(i+2)%len(hs)], hs[i], hs[(i+3)%len(hs)]
		wp := *p
		wp.Envelope.Request.Headers, wp.Envelope.Primary.Headers, wp.Shadow.Headers = normalized(hs[(i+2)%len(hs)]), normalized(hs[i]), normalized(hs[(i+3)%len(hs)])
		if p.Secondary != nil {
			p.Secondary.Headers = hs[(i+4)%len(hs)]
			sec := *p.Secondary
			sec.Headers = normalized(sec.Headers)
			wp.Secondary = &sec
		}
		pairs = append(pairs, p)
		wantPairs = append(wantPairs, &wp)
	}

	v2, err := AppendEnvelopeBatch(nil, envs)
	if err != nil {
		t.Fatal(err)
	}
	got, bad, err := DecodeEnvelopeBatch(v2)
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	if !reflect.DeepEqual(got, wantEnvs) {
		t.Fatalf("envelopes differ after v2:\n got %+v\nwant %+v", got, wantEnvs)
	}
	fromV1, bad, err := DecodeEnvelopeBatch(appendEnvelopeBatchV1(nil, envs))
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	if !reflect.DeepEqual(got, fromV1) {
		t.Fatalf("envelopes from v1 and v2 differ:\n v2 %+v\n v1 %+v", got, fromV1)
	}

	v2, err = AppendPairBatch(nil, pairs)
	if err != nil {
		t.Fatal(err)
	}
	gotPairs, bad, err := DecodePairBatch(v2)
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	if !reflect.DeepEqual(gotPairs, wantPairs) {
		t.Fatalf("pairs differ after v2")
	}
	pairsV1, bad, err := DecodePairBatch(appendPairBatchV1(nil, pairs))
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	if !reflect.DeepEqual(gotPairs, pairsV1) {
		t.Fatalf("pairs from v1 and v2 differ")
	}
	// Version 2 keeps bytes that are not UTF-8 (v1 JSON cannot: it
	// writes U+FFFD for them).
	e := batchEnvelope(0)
	e.Request.Headers = http.Header{"X-Not-Utf8": {"\xff\xfe", string([]byte{0xc3, 0x28})}, "\xff": {""}}
	v2, _ = AppendEnvelopeBatch(nil, []*Envelope{e})
	if got, bad, err := DecodeEnvelopeBatch(v2); err != nil || len(bad) != 0 || !reflect.DeepEqual(got[0], e) {
		t.Fatalf("bytes that are not UTF-8: %v %v %v", got, bad, err)
	}

	// The encoder left the caller's headers where they were.
	if !reflect.DeepEqual(envs[2].Request.Headers, hs[2]) || !reflect.DeepEqual(pairs[0].Secondary.Headers, hs[4]) {
		t.Fatal("encoding modified the headers")
	}
}

// The decoded values share one slice and one string: an append to one
// field must not overwrite the next, and nothing aliases the message.
func TestHeaderSetsIndependent(t *testing.T) {
	e := batchEnvelope(0)
	e.Request.Headers = http.Header{"A": {"1"}, "B": {"2", "3"}, "C": {"4"}}
	data, err := AppendEnvelopeBatch(nil, []*Envelope{e})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := DecodeEnvelopeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	h := got[0].Request.Headers
	h.Add("A", "x")
	h.Add("B", "y")
	clear(data)
	want := http.Header{"A": {"1", "x"}, "B": {"2", "3", "y"}, "C": {"4"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("headers after appends and a cleared message: %v, want %v", h, want)
	}
}

var headerSink http.Header

// A header set costs two allocations besides its map, whatever its
// number of fields and values: not one per string and one per field.
func TestHeaderSetsAllocations(t *testing.T) {
	for _, h := range []http.Header{{"A": {"1"}}, browserRequest(), oddHeaders()[6]} {
		region := appendHeaderSet(nil, h)
		decode := testing.AllocsPerRun(100, func() {
			var out http.Header
			if err := decodeHeaderSets(region, []*http.Header{&out}); err != nil {
				t.Fatal(err)
			}
		})
		vals := []string{"v"}
		names := make([]string, 0, len(h))
		for name := range h {
			names = append(names, name)
		}
		justMap := testing.AllocsPerRun(100, func() {
			m := make(http.Header, len(names))
			for _, name := range names {
				m[name] = vals
			}
			headerSink = m
		})
		if decode > justMap+2 {
			t.Errorf("%d fields: %v allocations, want at most %v (the map's) + 2 (a string, a []string)", len(h), decode, justMap)
		}
	}
}

// v2Item appends a version 2 item of env with raw header sets.
func v2Item(dst []byte, env *Envelope, sets ...[]byte) []byte {
	meta := *env
	meta.Request.Body, meta.Primary.Body, meta.Request.Headers, meta.Primary.Headers = nil, nil, nil, nil
	dst, _ = appendItem(dst, &meta, [][]byte{env.Request.Body, env.Primary.Body}, nil)
	for _, s := range sets {
		dst = append(dst, s...)
	}
	return dst
}

// rawSet is a header set from its parts: ints are varints, strings raw
// bytes; the length prefix is computed.
func rawSet(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			b = binary.AppendUvarint(b, uint64(p))
		case string:
			b = append(b, p...)
		}
	}
	return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
}

// A bad header set is an error of its item alone; the items around it
// decode. Counts that lie never size an allocation (a lie of 2^40 would
// not survive).
func TestBadHeaderSets(t *testing.T) {
	good := rawSet(1, 2, 1, "A", 2, 1, "x", 1, "y")
	var h http.Header
	if err := decodeHeaderSets(good, []*http.Header{&h}); err != nil || !reflect.DeepEqual(h, http.Header{"A": {"x", "y"}}) {
		t.Fatalf("the good set decodes to %v, %v", h, err)
	}
	for _, tc := range []struct {
		name string
		set  []byte
		want string
	}{
		{"fields lie", rawSet(1<<40, 1, 1, "A", 1, 1, "x"), "fields in"},
		{"values lie", rawSet(1, 1<<40, 1, "A", 1, 1, "x"), "values in"},
		{"field has more values than the set", rawSet(1, 1, 1, "A", 2, 1, "x", 1, "y"), "past the set's"},
		{"set has more values than its fields", rawSet(1, 3, 1, "A", 1, 1, "x", 0, 0), "the fields hold"},
		{"values and no field", rawSet(0, 1, 0), "no field"},
		{"duplicate name", rawSet(2, 2, 1, "A", 1, 1, "x", 1, "A", 1, 1, "y"), "twice"},
		{"name past the end", rawSet(1, 1, 9, "A", 1, 1, "x"), "past the end"},
		{"value past the end", rawSet(1, 1, 1, "A", 1, 9, "x"), "past the end"},
		{"bad varint", rawSet(1, 1, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), "bad length"},
		{"bytes after the last field", rawSet(1, 1, 1, "A", 1, 1, "x", "junk"), "after its last field"},
		{"counts cut", rawSet(1), "counts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := append([]byte(nil), batchMagic...)
			raw = append(raw, 3)
			raw = v2Item(raw, batchEnvelope(0), good, rawSet())
			bad := batchEnvelope(1)
			raw = v2Item(raw, bad, rawSet(), tc.set)
			raw = v2Item(raw, batchEnvelope(2), rawSet(), rawSet(0, 0))
			envs, items, err := DecodeEnvelopeBatch(raw)
			if err != nil {
				t.Fatalf("a bad header set failed the whole batch: %v", err)
			}
			if len(envs) != 2 || len(items) != 1 || items[0].Index != 1 || items[0].ID != bad.ID ||
				!errors.Is(items[0], ErrMalformed) || !strings.Contains(items[0].Error(), tc.want) {
				t.Fatalf("got %d envelopes and item errors %v, want item 1 with %q", len(envs), items, tc.want)
			}
			if envs[0].Request.Headers["A"][1] != "y" || envs[0].Primary.Headers != nil || envs[1].Primary.Headers != nil {
				t.Fatalf("good items: %v %v %v", envs[0].Request.Headers, envs[0].Primary.Headers, envs[1].Primary.Headers)
			}
			// The dead letter of the bad item keeps its bytes, and its
			// reason.
			one, err := BatchItem(raw, 1)
			if err != nil {
				t.Fatal(err)
			}
			_, again, err := DecodeEnvelopeBatch(one)
			if err != nil || len(again) != 1 || again[0].Index != 0 || again[0].Err.Error() != items[0].Err.Error() {
				t.Fatalf("dead letter decodes to %v, %v; the batch said %v", again, err, items[0])
			}
		})
	}

	// A version 2 item whose JSON holds headers too is refused, not
	// resolved one way or the other.
	withJSON := append(append([]byte(nil), batchMagic...), 1)
	e := batchEnvelope(0)
	meta := *e
	meta.Request.Body, meta.Primary.Body = nil, nil
	withJSON, _ = appendItem(withJSON, &meta, [][]byte{nil, nil}, []http.Header{nil, nil})
	if _, items, err := DecodeEnvelopeBatch(withJSON); err != nil || len(items) != 1 || !strings.Contains(items[0].Error(), `"headers" in its JSON`) {
		t.Fatalf("v2 item with JSON headers: %v %v", items, err)
	}

	// A set whose length runs past the message is a framing error: past
	// it, the next item cannot be found.
	cut := v2Item(append(append([]byte(nil), batchMagic...), 1), batchEnvelope(0), rawSet(), []byte{50, 1})
	if _, _, err := DecodeEnvelopeBatch(cut); !errors.Is(err, ErrMalformed) {
		t.Fatalf("set past the end: %v", err)
	}
}
