package envelope

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	json "github.com/segmentio/encoding/json"
)

// Batches carry many envelopes (or pairs) in one NATS message, so that the
// stream's storage, deduplication, delivery and acks are paid once per
// batch instead of once per sample, and bodies travel raw instead of as
// base64. docs/envelope.md ("Batches") is the contract for other taps.
//
// Framing (all lengths unsigned varints, as encoding/binary writes them):
//
//	"DLB" 0x01                    magic and framing version
//	n                             number of items
//	n times:
//	  m, m bytes                  the item's v1 JSON without its "body" fields
//	  k                           number of bodies that follow
//	  k times: len, len bytes     the raw bodies, in the order of bodyOrder
//
// A message without the BatchHeader is a single v1 JSON document.

// BatchHeader is the NATS header that marks a batch message; its value is
// BatchVersion.
const BatchHeader = "Darklaunch-Batch"

// BatchVersion is the framing version this package writes and reads.
const BatchVersion = "1"

var batchMagic = []byte{'D', 'L', 'B', 1}

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
		var err error
		if dst, err = appendItem(dst, &meta, e.Request.Body, e.Primary.Body); err != nil {
			return nil, fmt.Errorf("envelope %s: %w", e.ID, err)
		}
	}
	return dst, nil
}

// AppendPairBatch appends the framing of pairs to dst and returns it. The
// bodies follow in the order envelope request, envelope primary, shadow,
// and secondary when there is one.
func AppendPairBatch(dst []byte, pairs []*Pair) ([]byte, error) {
	dst = append(dst, batchMagic...)
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
		var err error
		if dst, err = appendItem(dst, &meta, bodies...); err != nil {
			return nil, fmt.Errorf("pair of envelope %s: %w", p.Envelope.ID, err)
		}
	}
	return dst, nil
}

func appendItem(dst []byte, meta any, bodies ...[]byte) ([]byte, error) {
	js, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	dst = binary.AppendUvarint(dst, uint64(len(js)))
	dst = append(dst, js...)
	dst = binary.AppendUvarint(dst, uint64(len(bodies)))
	for _, b := range bodies {
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
	}
	return dst, nil
}

// rawItem is one framed item before its JSON is decoded.
type rawItem struct {
	meta   []byte
	bodies [][]byte
}

// splitBatch checks the framing and cuts data into items. Any framing error
// makes the whole message malformed: past it, nothing can be located.
func splitBatch(data []byte) ([]rawItem, error) {
	if len(data) < len(batchMagic) || string(data[:len(batchMagic)]) != string(batchMagic) {
		return nil, fmt.Errorf("%w: not a darklaunch batch (framing version %s)", ErrMalformed, BatchVersion)
	}
	r := reader{data: data, off: len(batchMagic)}
	n := r.uvarint()
	// Every item takes at least two bytes, so a count above that is a lie
	// that must not size an allocation.
	if r.err == nil && n > uint64(len(data)/2) {
		return nil, fmt.Errorf("%w: batch claims %d items in %d bytes", ErrMalformed, n, len(data))
	}
	items := make([]rawItem, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		var it rawItem
		it.meta = r.bytes()
		k := r.uvarint()
		if r.err == nil && k > maxBodies {
			return nil, fmt.Errorf("%w: batch item %d has %d bodies, at most %d", ErrMalformed, i, k, maxBodies)
		}
		for j := uint64(0); j < k && r.err == nil; j++ {
			it.bodies = append(it.bodies, r.bytes())
		}
		items = append(items, it)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: batch framing: %v at byte %d", ErrMalformed, r.err, r.off)
	}
	if r.off != len(data) {
		return nil, fmt.Errorf("%w: batch framing: %d bytes after the last item", ErrMalformed, len(data)-r.off)
	}
	return items, nil
}

// DecodeEnvelopeBatch decodes a batch of envelopes. Envelopes whose JSON or
// bodies are bad come back as ItemErrors (dead-letter them alone); a broken
// framing fails the whole message with an error wrapping ErrMalformed.
// The bodies alias data: do not modify them.
func DecodeEnvelopeBatch(data []byte) ([]*Envelope, []ItemError, error) {
	items, err := splitBatch(data)
	if err != nil {
		return nil, nil, err
	}
	envs := make([]*Envelope, 0, len(items))
	var bad []ItemError
	for i, it := range items {
		e := new(Envelope)
		err := json.Unmarshal(it.meta, e)
		switch {
		case err != nil:
			err = fmt.Errorf("%w: envelope is not valid JSON: %v", ErrMalformed, err)
		case len(it.bodies) != 2:
			err = fmt.Errorf("%w: envelope has %d bodies, want 2", ErrMalformed, len(it.bodies))
		default:
			e.Request.Body, e.Primary.Body = rawBody(it.bodies[0]), rawBody(it.bodies[1])
			err = e.Validate()
		}
		if err != nil {
			bad = append(bad, ItemError{Index: i, ID: e.ID, Err: err})
			continue
		}
		envs = append(envs, e)
	}
	return envs, bad, nil
}

// DecodePairBatch is DecodeEnvelopeBatch for pairs: three bodies, or four
// when the pair has a secondary.
func DecodePairBatch(data []byte) ([]*Pair, []ItemError, error) {
	items, err := splitBatch(data)
	if err != nil {
		return nil, nil, err
	}
	pairs := make([]*Pair, 0, len(items))
	var bad []ItemError
	for i, it := range items {
		p := new(Pair)
		err := json.Unmarshal(it.meta, p)
		want := 3
		if p.Secondary != nil {
			want = 4
		}
		switch {
		case err != nil:
			err = fmt.Errorf("%w: pair is not valid JSON: %v", ErrMalformed, err)
		case len(it.bodies) != want:
			err = fmt.Errorf("%w: pair has %d bodies, want %d", ErrMalformed, len(it.bodies), want)
		case p.V != Version:
			err = fmt.Errorf("%w: pair version %d, want %d", ErrMalformed, p.V, Version)
		default:
			p.Envelope.Request.Body, p.Envelope.Primary.Body, p.Shadow.Body = rawBody(it.bodies[0]), rawBody(it.bodies[1]), rawBody(it.bodies[2])
			if p.Secondary != nil {
				p.Secondary.Body = rawBody(it.bodies[3])
			}
			err = p.Envelope.Validate()
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

// FitBatchItem cuts env's captured bodies so that env, encoded alone in a
// batch (size bytes now), fits in limit bytes: the room left by the rest
// of the item is shared fairly between the bodies, and each cut one is
// flagged truncated (BodySize keeps the full size). ErrTooLarge if the
// item without its bodies does not fit.
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
