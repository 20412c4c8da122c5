package envelope

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"slices"
)

// A header set is one message's http.Header in a version 2 batch item,
// written beside the raw bodies instead of in the item's JSON, because
// decoding header maps out of JSON (a string per name and per value, a
// slice per field) was the pipeline's largest single cost. Its layout
// (docs/envelope.md, "Batches"), every number an unsigned varint:
//
//	len, len bytes of:
//	  f                           number of fields
//	  t                           number of values of all the fields
//	  f times:
//	    nlen, nlen bytes          the name, as the header map holds it
//	    c                         number of values of this field
//	    c times: vlen, vlen bytes the values, in order
//
// A nil or empty header is written as len 0; a set of f = 0 decodes to a
// nil header too, as a v1 document without "headers" does.
//
// Decoding a set costs three allocations whatever its size: the item's
// header bytes as one string that the names and values are cut from, one
// []string for all the values (each field gets vals[i:j:j], so an append
// to one field cannot overwrite the next), and the map.

// appendHeaderSet appends h as a header set.
func appendHeaderSet(dst []byte, h http.Header) []byte {
	if len(h) == 0 {
		return append(dst, 0)
	}
	t, n := 0, 0
	for name, vs := range h {
		n += uvarintLen(len(name)) + len(name) + uvarintLen(len(vs))
		for _, v := range vs {
			n += uvarintLen(len(v)) + len(v)
		}
		t += len(vs)
	}
	n += uvarintLen(len(h)) + uvarintLen(t)
	dst = slices.Grow(dst, uvarintLen(n)+n)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = binary.AppendUvarint(dst, uint64(len(h)))
	dst = binary.AppendUvarint(dst, uint64(t))
	for name, vs := range h {
		dst = binary.AppendUvarint(dst, uint64(len(name)))
		dst = append(dst, name...)
		dst = binary.AppendUvarint(dst, uint64(len(vs)))
		for _, v := range vs {
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		}
	}
	return dst
}

func uvarintLen(x int) int { return (bits.Len64(uint64(x)|1) + 6) / 7 }

// errHeaderSet is what a bad header set's error says; the decoders wrap it
// into the item's error (and ErrMalformed).
var errHeaderSet = errors.New("bad header set")

// decodeHeaderSets decodes region, the header sets of one item (each
// length-prefixed, as splitBatch found them), into dst in order. An empty
// set leaves its header as it is (nil).
func decodeHeaderSets(region []byte, dst []*http.Header) error {
	// First pass: check the counts of every set against its length, so
	// that no allocation is sized from a count that lies, and add up the
	// fields and values.
	fields, values := 0, 0
	r := reader{data: region}
	for i := range dst {
		set := r.bytes()
		if r.err != nil {
			return fmt.Errorf("%w %d: %v", errHeaderSet, i, r.err)
		}
		if len(set) == 0 {
			continue
		}
		sr := reader{data: set}
		f, t := sr.uvarint(), sr.uvarint()
		rest := uint64(len(set) - sr.off)
		switch {
		case sr.err != nil:
			return fmt.Errorf("%w %d: counts: %v", errHeaderSet, i, sr.err)
		case f > rest/2: // a field takes at least two bytes
			return fmt.Errorf("%w %d: %d fields in %d bytes", errHeaderSet, i, f, rest)
		case t > rest: // a value takes at least one byte
			return fmt.Errorf("%w %d: %d values in %d bytes", errHeaderSet, i, t, rest)
		case f == 0 && t != 0:
			return fmt.Errorf("%w %d: %d values and no field", errHeaderSet, i, t)
		}
		fields += int(f)
		values += int(t)
	}
	if r.off != len(region) {
		return fmt.Errorf("%w: %d bytes after the last set", errHeaderSet, len(region)-r.off)
	}
	if fields == 0 {
		return nil
	}
	s := string(region)
	vals := make([]string, values)
	vi := 0
	r = reader{data: region}
	for i, h := range dst {
		n := int(r.uvarint()) // checked above
		end := r.off + n
		sr := reader{data: region[:end], off: r.off}
		r.off = end
		if n == 0 {
			continue
		}
		f, t := sr.uvarint(), int(sr.uvarint())
		last := vi + t
		if f == 0 {
			continue
		}
		hdr := make(http.Header, f)
		for k := range int(f) {
			name := sr.str(s)
			c := sr.uvarint()
			if sr.err != nil {
				return fmt.Errorf("%w %d: field %d: %v", errHeaderSet, i, k, sr.err)
			}
			if c > uint64(last-vi) {
				return fmt.Errorf("%w %d: field %q has %d values, past the set's %d", errHeaderSet, i, name, c, t)
			}
			from := vi
			for range int(c) {
				vals[vi] = sr.str(s)
				vi++
			}
			if sr.err != nil {
				return fmt.Errorf("%w %d: field %q: %v", errHeaderSet, i, name, sr.err)
			}
			hdr[name] = vals[from:vi:vi]
			if len(hdr) != k+1 {
				return fmt.Errorf("%w %d: field %q twice", errHeaderSet, i, name)
			}
		}
		if vi != last {
			return fmt.Errorf("%w %d: %d values, the fields hold %d", errHeaderSet, i, t, t-(last-vi))
		}
		if sr.off != end {
			return fmt.Errorf("%w %d: %d bytes after its last field", errHeaderSet, i, end-sr.off)
		}
		*h = hdr
	}
	return nil
}
