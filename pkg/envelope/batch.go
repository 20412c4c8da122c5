package envelope

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"

	json "github.com/segmentio/encoding/json"
)

// Batches carry many envelopes (or pairs) in one NATS message, so that the
// stream's storage, deduplication, delivery and acks are paid once per
// batch instead of once per sample, and bodies travel raw instead of as
// base64. docs/envelope.md ("Batches") is the contract for other taps.
//
// Framing (all lengths unsigned varints, as encoding/binary writes them):
//
//	"DLB" v                       magic and framing version (1 or 2)
//	n                             number of items
//	n times:
//	  m, m bytes                  the item's v1 JSON without its "body"
//	                              fields (version 2: nor its "headers")
//	  k                           number of bodies that follow
//	  k times: len, len bytes     the raw bodies: request, primary (then
//	                              shadow, secondary if any, in a pair)
//	  version 2, k times:         the header sets of the same messages, in
//	    len, len bytes            the same order (headerset.go)
//
// This package writes version 2 and reads both. A message without the
// BatchHeader is a single v1 JSON document.

// BatchHeader is the NATS header that marks a batch message; its value is
// BatchVersion, the version the writer used (consumers read the version
// from the framing and only check that the header is there).
const BatchHeader = "Darklaunch-Batch"

// BatchVersion is the framing version this package writes.
const BatchVersion = "2"

// batchMagic is the start of a batch; its last byte, the framing version,
// is batchV2 in what this package writes.
var batchMagic = []byte{'D', 'L', 'B', batchV2}

// The framing versions this package reads.
const (
	batchV1 = 1
	batchV2 = 2
)

// maxBodies bounds the bodies of one item: a pair has at most four
// (request, primary, shadow, secondary).
const maxBodies = 4

// ItemError is one item of a batch that could not be decoded or validated;
// the other items of the batch are still usable. Err wraps ErrMalformed.
type ItemError struct {
	// Index is the item's position in the batch; ID its id when its JSON
	// could be read far enough to tell.
	Index int
	ID    string
	Err   error
}

func (e ItemError) Error() string {
	if e.ID != "" {
		return fmt.Sprintf("batch item %d (%s): %v", e.Index, e.ID, e.Err)
	}
	return fmt.Sprintf("batch item %d: %v", e.Index, e.Err)
}

func (e ItemError) Unwrap() error { return e.Err }

// BatchID is the Nats-Msg-Id of a batch: a digest of its item ids in order,
// so that a retried publish of the same items is deduplicated by the
// stream, like a single envelope's id.
func BatchID(ids []string) string {
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return "batch-" + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// AppendEnvelopeBatch appends the framing of envs to dst and returns it.
// The envelopes are not modified. It fails only when an envelope cannot
// be encoded as JSON, which the types here do not allow.
func AppendEnvelopeBatch(dst []byte, envs []*Envelope) ([]byte, error) {
	dst = append(dst, batchMagic...)
	dst = binary.AppendUvarint(dst, uint64(len(envs)))
	for _, e := range envs {
		meta := *e
		meta.Request.Body, meta.Primary.Body = nil, nil
		meta.Request.Headers, meta.Primary.Headers = nil, nil
		var err error
		dst, err = appendItem(dst, &meta,
			[][]byte{e.Request.Body, e.Primary.Body},
			[]http.Header{e.Request.Headers, e.Primary.Headers})
		if err != nil {
			return nil, fmt.Errorf("envelope %s: %w", e.ID, err)
		}
	}
	return dst, nil
}

// AppendPairBatch appends the framing of pairs to dst and returns it. The
// bodies and header sets follow in the order envelope request, envelope
// primary, shadow, and secondary when there is one.
func AppendPairBatch(dst []byte, pairs []*Pair) ([]byte, error) {
	dst = append(dst, batchMagic...)
	dst = binary.AppendUvarint(dst, uint64(len(pairs)))
	for _, p := range pairs {
		meta := *p
		meta.Envelope.Request.Body, meta.Envelope.Primary.Body, meta.Shadow.Body = nil, nil, nil
		meta.Envelope.Request.Headers, meta.Envelope.Primary.Headers, meta.Shadow.Headers = nil, nil, nil
		bodies := [][]byte{p.Envelope.Request.Body, p.Envelope.Primary.Body, p.Shadow.Body}
		headers := []http.Header{p.Envelope.Request.Headers, p.Envelope.Primary.Headers, p.Shadow.Headers}
		if p.Secondary != nil {
			sec := *p.Secondary
			sec.Body, sec.Headers = nil, nil
			meta.Secondary = &sec
			bodies = append(bodies, p.Secondary.Body)
			headers = append(headers, p.Secondary.Headers)
		}
		var err error
		if dst, err = appendItem(dst, &meta, bodies, headers); err != nil {
			return nil, fmt.Errorf("pair of envelope %s: %w", p.Envelope.ID, err)
		}
	}
	return dst, nil
}

// appendItem appends one item: meta's JSON, the bodies, then a header set
// per header (none in a version 1 item).
func appendItem(dst []byte, meta any, bodies [][]byte, headers []http.Header) ([]byte, error) {
	// The JSON goes straight into dst, then moves up past its length
	// prefix: cheaper than a copy from json.Marshal's own buffer.
	start := len(dst)
	dst, err := json.Append(dst, meta, json.EscapeHTML|json.SortMapKeys)
	if err != nil {
		return nil, err
	}
	var prefix [binary.MaxVarintLen64]byte
	p := binary.PutUvarint(prefix[:], uint64(len(dst)-start))
	dst = append(dst, prefix[:p]...)
	copy(dst[start+p:], dst[start:len(dst)-p])
	copy(dst[start:], prefix[:p])
	dst = binary.AppendUvarint(dst, uint64(len(bodies)))
	for _, b := range bodies {
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
	}
	for _, h := range headers {
		dst = appendHeaderSet(dst, h)
	}
	return dst, nil
}

// rawItem is one framed item before its JSON is decoded.
type rawItem struct {
	meta    []byte
	bodies  [maxBodies][]byte
	nbodies int
	// headers is the item's header sets (version 2; nil in version 1),
	// and raw all of its bytes, as BatchItem copies them.
	headers []byte
	raw     []byte
}

// splitBatch checks the framing and cuts data into items; it returns the
// framing version too. Any framing error makes the whole message
// malformed: past it, nothing can be located.
func splitBatch(data []byte) ([]rawItem, byte, error) {
	if len(data) < len(batchMagic) || string(data[:len(batchMagic)-1]) != "DLB" ||
		(data[len(batchMagic)-1] != batchV1 && data[len(batchMagic)-1] != batchV2) {
		return nil, 0, fmt.Errorf("%w: not a darklaunch batch (framing versions %d and %d)", ErrMalformed, batchV1, batchV2)
	}
	version := data[len(batchMagic)-1]
	r := reader{data: data, off: len(batchMagic)}
	n := r.uvarint()
	// Every item takes at least two bytes, so a count above that is a lie
	// that must not size an allocation.
	if r.err == nil && n > uint64(len(data)/2) {
		return nil, 0, fmt.Errorf("%w: batch claims %d items in %d bytes", ErrMalformed, n, len(data))
	}
	items := make([]rawItem, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		var it rawItem
		start := r.off
		it.meta = r.bytes()
		k := r.uvarint()
		if r.err == nil && k > maxBodies {
			return nil, 0, fmt.Errorf("%w: batch item %d has %d bodies, at most %d", ErrMalformed, i, k, maxBodies)
		}
		it.nbodies = int(k)
		for j := range it.nbodies {
			it.bodies[j] = r.bytes()
		}
		if version == batchV2 {
			from := r.off
			for range it.nbodies {
				r.bytes()
			}
			it.headers = data[from:r.off:r.off]
		}
		it.raw = data[start:r.off:r.off]
		items = append(items, it)
	}
	if r.err != nil {
		return nil, 0, fmt.Errorf("%w: batch framing: %v at byte %d", ErrMalformed, r.err, r.off)
	}
	if r.off != len(data) {
		return nil, 0, fmt.Errorf("%w: batch framing: %d bytes after the last item", ErrMalformed, len(data)-r.off)
	}
	return items, version, nil
}

// headersOf fills dst from the item's header sets (version 2). A version 2
// item's JSON must not hold headers: they would be lost or ambiguous.
func (it *rawItem) headersOf(dst ...*http.Header) error {
	if it.headers == nil {
		return nil
	}
	for _, h := range dst {
		if *h != nil {
			return fmt.Errorf("%w: version 2 item has \"headers\" in its JSON", ErrMalformed)
		}
	}
	if err := decodeHeaderSets(it.headers, dst); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// DecodeEnvelopeBatch decodes a batch of envelopes (framing version 1 or
// 2). Envelopes whose JSON, bodies or header sets are bad come back as
// ItemErrors (dead-letter them alone); a broken framing fails the whole
// message with an error wrapping ErrMalformed. The bodies alias data: do
// not modify them (the headers do not).
func DecodeEnvelopeBatch(data []byte) ([]*Envelope, []ItemError, error) {
	items, _, err := splitBatch(data)
	if err != nil {
		return nil, nil, err
	}
	envs := make([]*Envelope, 0, len(items))
	var bad []ItemError
	for i := range items {
		it := &items[i]
		e := new(Envelope)
		err := json.Unmarshal(it.meta, e)
		switch {
		case err != nil:
			err = fmt.Errorf("%w: envelope is not valid JSON: %v", ErrMalformed, err)
		case it.nbodies != 2:
			err = fmt.Errorf("%w: envelope has %d bodies, want 2", ErrMalformed, it.nbodies)
		default:
			e.Request.Body, e.Primary.Body = rawBody(it.bodies[0]), rawBody(it.bodies[1])
			if err = it.headersOf(&e.Request.Headers, &e.Primary.Headers); err == nil {
				err = e.Validate()
			}
		}
		if err != nil {
			bad = append(bad, ItemError{Index: i, ID: e.ID, Err: err})
			continue
		}
		envs = append(envs, e)
	}
	return envs, bad, nil
}

// DecodePairBatch is DecodeEnvelopeBatch for pairs: three bodies (and
// header sets), or four when the pair has a secondary.
func DecodePairBatch(data []byte) ([]*Pair, []ItemError, error) {
	items, _, err := splitBatch(data)
	if err != nil {
		return nil, nil, err
	}
	pairs := make([]*Pair, 0, len(items))
	var bad []ItemError
	for i := range items {
		it := &items[i]
		p := new(Pair)
		err := json.Unmarshal(it.meta, p)
		want := 3
		if p.Secondary != nil {
			want = 4
		}
		switch {
		case err != nil:
			err = fmt.Errorf("%w: pair is not valid JSON: %v", ErrMalformed, err)
		case it.nbodies != want:
			err = fmt.Errorf("%w: pair has %d bodies, want %d", ErrMalformed, it.nbodies, want)
		case p.V != Version:
			err = fmt.Errorf("%w: pair version %d, want %d", ErrMalformed, p.V, Version)
		default:
			p.Envelope.Request.Body, p.Envelope.Primary.Body, p.Shadow.Body = rawBody(it.bodies[0]), rawBody(it.bodies[1]), rawBody(it.bodies[2])
			hs := [4]*http.Header{&p.Envelope.Request.Headers, &p.Envelope.Primary.Headers, &p.Shadow.Headers}
			if p.Secondary != nil {
				p.Secondary.Body = rawBody(it.bodies[3])
				hs[3] = &p.Secondary.Headers
			}
			if err = it.headersOf(hs[:want]...); err == nil {
				err = p.Envelope.Validate()
			}
		}
		if err != nil {
			bad = append(bad, ItemError{Index: i, ID: p.Envelope.ID, Err: err})
			continue
		}
		pairs = append(pairs, p)
	}
	return pairs, bad, nil
}

// rawBody keeps an empty body nil, as a v1 JSON document without "body"
// decodes, so that both framings give equal values.
func rawBody(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b[:len(b):len(b)]
}

// reader reads the framing's varints and length-prefixed byte strings,
// keeping the first error.
type reader struct {
	data []byte
	off  int
	err  error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.data[r.off:])
	if n <= 0 {
		r.err = fmt.Errorf("bad length")
		return 0
	}
	r.off += n
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.data)-r.off) {
		r.err = fmt.Errorf("length %d past the end", n)
		return nil
	}
	b := r.data[r.off : r.off+int(n)]
	r.off += int(n)
	return b
}

// str is bytes for a header set: the same bytes cut from s, the string
// of r.data.
func (r *reader) str(s string) string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.data)-r.off) {
		r.err = fmt.Errorf("length %d past the end", n)
		return ""
	}
	v := s[r.off : r.off+int(n)]
	r.off += int(n)
	return v
}

// FitBatchItem cuts env's captured bodies so that env, encoded alone in a
// batch (size bytes now), fits in limit bytes: the room left by the rest
// of the item (its JSON and header sets, which are never cut) is shared
// fairly between the bodies, and each cut one is flagged truncated
// (BodySize keeps the full size). ErrTooLarge if the item without its
// bodies does not fit.
func FitBatchItem(env *Envelope, size, limit int) error {
	if size <= limit {
		return nil
	}
	bodies := env.bodies()
	// Slack for the framing's length prefixes and the JSON's
	// "body_truncated":true, which the cut adds.
	room := limit - size - 32*len(bodies) - 16
	for _, b := range bodies {
		room += len(*b.b)
	}
	if room <= 0 {
		return ErrTooLarge
	}
	share(bodies, room)
	return nil
}
