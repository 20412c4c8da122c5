package comparator

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
)

const (
	// maxExampleBody caps each body stored in an example.
	maxExampleBody = 64 << 10
	// maxExampleHeaders caps each header object stored in an example; a
	// larger one is replaced by a note (cutting JSON would break it).
	maxExampleHeaders = 64 << 10
	// maxExampleQuery caps the stored query string.
	maxExampleQuery = 8 << 10
	// maxExamplesPerBatch bounds the examples held with one batch, so a
	// batch of pairs of all-new classes does not double its memory; the
	// slots not written stay free for later pairs.
	maxExamplesPerBatch = 100
	// maxTrackedClasses is the size of each generation of exampleSlots.
	maxTrackedClasses = 10_000
)

// ExampleSlot is the slot an envelope's example takes in its diff class:
// a hash of the envelope id modulo analytics.ExampleSlots. Every
// comparator process computes the same slot for the same envelope, so a
// redelivered pair rewrites its own slot, never another's.
func ExampleSlot(envelopeID string) uint8 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(envelopeID))
	return uint8(h.Sum64() % analytics.ExampleSlots)
}

// BuildExample turns a mismatching pair into its stored example, every
// header, query and body redacted with the launch's rules (compare.Redact
// and compare.RedactRequest: Authorization, Cookie, Set-Cookie, the
// default and configured sensitive headers, JSON keys and form fields;
// credential-looking values whatever holds them; the request's cookie and
// Authorization values echoed in the responses) before anything is copied
// into it. Its diffs are the row's real ones
// (not noise), those the fingerprint covers.
func BuildExample(p *envelope.Pair, row *analytics.Row, rules *compare.Ruleset) analytics.Example {
	req := compare.RedactRequest(&p.Envelope.Request, rules)
	echoes := compare.RequestEchoes(p.Envelope.Request.Headers)
	prim := compare.Redact(&p.Envelope.Primary, rules, echoes)
	sh := compare.Redact(&p.Shadow.Response, rules, echoes)
	ex := analytics.Example{
		LaunchID:       row.LaunchID,
		Fingerprint:    row.Fingerprint,
		Slot:           ExampleSlot(row.EnvelopeID),
		EnvelopeID:     row.EnvelopeID,
		TS:             row.TS,
		Route:          row.Route,
		Method:         row.Method,
		Path:           row.Path,
		Query:          truncate(strings.ToValidUTF8(req.RawQuery, "\uFFFD"), maxExampleQuery),
		RequestHeaders: headersJSON(req.Headers),
		RequestBody:    bodyText(req.Headers, req.Body, req.BodySize, req.BodyTruncated),
		PrimaryStatus:  row.PrimaryStatus,
		PrimaryHeaders: headersJSON(prim.Headers),
		PrimaryBody:    bodyText(prim.Headers, prim.Body, prim.BodySize, prim.BodyTruncated),
		ShadowStatus:   row.ShadowStatus,
		ShadowHeaders:  headersJSON(sh.Headers),
		ShadowBody:     bodyText(sh.Headers, sh.Body, sh.BodySize, sh.BodyTruncated),
		ShadowError:    row.ShadowError,
	}
	for i, path := range row.DiffPaths {
		if i < len(row.DiffNoise) && row.DiffNoise[i] {
			continue
		}
		ex.DiffPaths = append(ex.DiffPaths, path)
		ex.DiffKinds = append(ex.DiffKinds, row.DiffKinds[i])
	}
	return ex
}

// headersJSON renders headers as a JSON object of arrays (as Go encodes
// http.Header), "{}" when there are none.
func headersJSON(h http.Header) string {
	if len(h) == 0 {
		return "{}"
	}
	// Header values are text on the wire, but a tap may have captured
	// bytes that are not UTF-8; json.Marshal would replace them anyway.
	data, err := json.Marshal(h)
	if err != nil {
		return "{}"
	}
	if len(data) > maxExampleHeaders {
		data, _ = json.Marshal(map[string][]string{
			"Darklaunch-Note": {fmt.Sprintf("headers omitted: %d bytes of JSON", len(data))}})
	}
	return string(data)
}

// bodyText renders a body for an example: text, capped at maxExampleBody,
// invalid UTF-8 replaced. A body still under a Content-Encoding (one the
// redaction could not decode) or one that is mostly not text is replaced
// by a note giving its size, rather than stored as binary garbage.
func bodyText(h http.Header, body []byte, size int64, truncated bool) string {
	if len(body) == 0 {
		if truncated || size > 0 {
			return fmt.Sprintf("[body not kept: %s]", sizeText(size))
		}
		return ""
	}
	if enc := strings.TrimSpace(h.Get("Content-Encoding")); enc != "" && !strings.EqualFold(enc, "identity") {
		return fmt.Sprintf("[%s-encoded body, %d bytes]", enc, len(body))
	}
	cut := body
	if len(cut) > maxExampleBody {
		cut = cut[:maxExampleBody]
		// Do not leave the start of a character at the end.
		for k := 0; k < utf8.UTFMax-1 && len(cut) > 0; k++ {
			if r, n := utf8.DecodeLastRune(cut); r != utf8.RuneError || n != 1 {
				break
			}
			cut = cut[:len(cut)-1]
		}
	}
	if binary(cut) {
		return fmt.Sprintf("[binary body, %s]", sizeText(max(size, int64(len(body)))))
	}
	text := strings.ToValidUTF8(string(cut), "\uFFFD")
	if len(cut) < len(body) || truncated {
		text += fmt.Sprintf("\n[body truncated: first %d bytes of %s]", len(cut), sizeText(max(size, int64(len(body)))))
	}
	return text
}

func sizeText(size int64) string {
	if size < 0 {
		return "unknown size"
	}
	return fmt.Sprintf("%d bytes", size)
}

// binary reports whether b looks like binary data rather than text: a NUL
// byte, or more than one byte in ten not part of valid UTF-8.
func binary(b []byte) bool {
	bad := 0
	for i := 0; i < len(b); {
		if b[i] == 0 {
			return true
		}
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			bad++
		}
		i += n
	}
	return bad*10 > len(b)
}

// exampleSlots remembers which example slots of which diff classes this
// process has written, so examples cost a bounded number of writes: at most
// analytics.ExampleSlots per class, not one per mismatching pair.
//
// It is bounded by two generations of at most max classes: when the
// current one is full it becomes the previous one and the oldest is
// dropped; a class found in the previous generation moves back to the
// current one. A class forgotten that way (not seen while max other
// classes appeared), or after a restart, writes its slots again; they
// replace the stored ones (same sort key in the ReplacingMergeTree), so
// the table still holds at most analytics.ExampleSlots per class.
//
// It is used by the consume loop alone (not safe for concurrent use).
type exampleSlots struct {
	max       int
	cur, prev map[string]uint8 // class key -> bit mask of written slots
}

func newExampleSlots(n int) *exampleSlots {
	return &exampleSlots{max: n, cur: map[string]uint8{}, prev: map[string]uint8{}}
}

func classKey(launchID, fingerprint string) string { return launchID + "\x00" + fingerprint }

// claim marks a slot of a class as written and reports whether it was
// free.
func (t *exampleSlots) claim(key string, slot uint8) bool {
	bit := uint8(1) << slot
	mask, ok := t.cur[key]
	if !ok {
		mask = t.prev[key]
		delete(t.prev, key)
		if len(t.cur) >= t.max {
			t.prev, t.cur = t.cur, make(map[string]uint8, t.max)
		}
	}
	t.cur[key] = mask | bit
	return mask&bit == 0
}

// release frees a slot whose example could not be written, so a later
// pair of the class may fill it.
func (t *exampleSlots) release(key string, slot uint8) {
	bit := uint8(1) << slot
	for _, m := range []map[string]uint8{t.cur, t.prev} {
		if mask, ok := m[key]; ok {
			m[key] = mask &^ bit
		}
	}
}

func (t *exampleSlots) len() int { return len(t.cur) + len(t.prev) }
