package compare

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

// Body formats, see Result.BodyFormat.
const (
	FormatJSON   = "json"
	FormatNDJSON = "ndjson" // JSON texts one per line, or after an RS (see IsJSONSeq)
	FormatForm   = "form"
	FormatText   = "text"
	FormatBinary = "binary"
	FormatEmpty  = "empty"
)

// DefaultMaxBodyBytes is the default cap on a body's size after decoding
// its Content-Encoding, see Comparer.MaxBodyBytes.
const DefaultMaxBodyBytes = 8 << 20

// body is one side's body as compared: decoded, capped.
type body struct {
	b         []byte
	truncated bool  // less than the whole body: cut by the tap or by MaxBodyBytes
	size      int64 // the whole body's size, -1 if unknown
}

var errUnknownEncoding = errors.New("unknown content coding")

// contentCodings returns the codings of a Content-Encoding header in the
// order they were applied, "identity" left out.
func contentCodings(h http.Header) []string {
	var out []string
	for _, v := range values(h, "Content-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			if c := strings.ToLower(strings.TrimSpace(part)); c != "" && c != "identity" {
				out = append(out, c)
			}
		}
	}
	return out
}

// decodeBody undoes the response's Content-Encoding and caps the result at
// max bytes. A body the tap truncated decodes as far as it goes. The error
// is set when the body cannot be decoded (unknown coding, corrupt data);
// codings names what was decoded.
func decodeBody(h http.Header, raw []byte, rawTruncated bool, rawSize int64, max int) (out body, codings string, err error) {
	out = body{b: raw, truncated: rawTruncated, size: rawSize}
	if !rawTruncated {
		out.size = int64(len(raw))
	} else if rawSize < int64(len(raw)) {
		out.size = -1
	}
	cs := contentCodings(h)
	if len(cs) == 0 || len(raw) == 0 {
		if len(out.b) > max {
			out.b, out.truncated = out.b[:max], true
		}
		return out, "", nil
	}
	codings = strings.Join(cs, ", ")
	data := raw
	for i := len(cs) - 1; i >= 0; i-- {
		var capped bool
		data, capped, err = decodeOne(cs[i], data, max)
		if err != nil {
			// A prefix of an encoded body ends early; what came out of it
			// is a prefix of the decoded body.
			if rawTruncated && errors.Is(err, io.ErrUnexpectedEOF) && len(data) > 0 {
				err = nil
				out.truncated = true
			} else {
				return body{}, codings, err
			}
		}
		if capped {
			out.truncated = true
		}
	}
	out.b = data
	if out.truncated {
		out.size = -1
	} else {
		out.size = int64(len(data))
	}
	return out, codings, nil
}

func decodeOne(coding string, data []byte, max int) ([]byte, bool, error) {
	var r io.Reader
	switch coding {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, false, err
		}
		r = zr
	case "deflate":
		// RFC 9110 deflate is zlib; some servers send raw DEFLATE.
		if zr, err := zlib.NewReader(bytes.NewReader(data)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(data))
		}
	case "br":
		r = brotli.NewReader(bytes.NewReader(data))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderMaxMemory(uint64(max)+1))
		if err != nil {
			return nil, false, err
		}
		defer zr.Close()
		r = zr
	default:
		return nil, false, fmt.Errorf("%w %q", errUnknownEncoding, coding)
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, int64(max)+1))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return buf.Bytes(), false, err
	}
	if n > int64(max) {
		return buf.Bytes()[:max], true, nil
	}
	return buf.Bytes(), false, nil
}

// bodyFor decodes one side, noting what happened; ok is false when the
// body could not be decoded.
func (s *state) bodyFor(side string, r *envelope.Response) (body, bool) {
	b, codings, err := decodeBody(r.Headers, r.Body, r.BodyTruncated, r.BodySize, s.maxBody)
	if err != nil {
		s.note("%s body could not be decoded (%s: %v): compared the raw bytes", side, codings, err)
		return body{}, false
	}
	if b.truncated && !r.BodyTruncated {
		s.truncated = true
		if codings != "" {
			s.note("%s body decodes (%s) to more than %d bytes: compared the first %d", side, codings, s.maxBody, s.maxBody)
		} else {
			s.note("%s body is larger than %d bytes: compared the first %d", side, s.maxBody, s.maxBody)
		}
	}
	return b, true
}

// rawBody is a side's body as received, still encoded, capped.
func (s *state) rawBody(r *envelope.Response) body {
	raw := body{b: r.Body, truncated: r.BodyTruncated, size: int64(len(r.Body))}
	if r.BodyTruncated {
		raw.size = -1
		if r.BodySize >= int64(len(r.Body)) {
			raw.size = r.BodySize
		}
	}
	if len(raw.b) > s.maxBody {
		raw.b, raw.truncated = raw.b[:s.maxBody], true
		s.truncated = true
	}
	return raw
}

// bytesEqual compares bodies byte for byte, and their full sizes when both
// are known.
func bytesEqual(a, b body) bool {
	if !bytes.Equal(a.b, b.b) {
		return false
	}
	return a.size < 0 || b.size < 0 || a.size == b.size
}

// Bounds of Result.Summary parts.
const (
	summarySnippet = 48 // bytes of a line shown per side
	summaryContext = 16 // bytes shown before the first differing byte of a long line
)

// textSummary describes the first line where two texts differ:
// line 12: -"foo" / +"bar", each side a bounded, quoted snippet starting a
// little before the first differing byte, (end) for a side with no such
// line. Credentials in a snippet (MaskSecrets, and the echoes) are shown
// as [REDACTED], also when the snippet holds only part of one.
func textSummary(a, b body, echoes Echoes) string {
	n := min(len(a.b), len(b.b))
	i := 0
	for i < n && a.b[i] == b.b[i] {
		i++
	}
	if i == n && len(a.b) == len(b.b) {
		return fmt.Sprintf("equal in the first %d bytes; whole sizes %s and %s", n, sizeString(a.size), sizeString(b.size))
	}
	line := 1 + bytes.Count(a.b[:i], []byte{'\n'})
	ls := bytes.LastIndexByte(a.b[:i], '\n') + 1
	from := ls
	if i-ls > summaryContext+8 {
		from = i - summaryContext
		// Start on a character boundary of both sides (they agree up to i).
		for from < i && !utf8.RuneStart(a.b[from]) {
			from++
		}
	}
	col := ""
	if from > ls {
		col = " col " + strconv.Itoa(i-ls+1)
	}
	return fmt.Sprintf("line %d%s: -%s / +%s", line, col, snippet(a.b, ls, from, echoes), snippet(b.b, ls, from, echoes))
}

func sizeString(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return strconv.FormatInt(n, 10)
}

// secretReach is how far around a snippet credentials are looked for, so
// one that starts before the snippet or ends after it is still recognized.
const secretReach = 4096

// snippet quotes the line of text starting at ls, from offset from, cut at
// the end of the line or summarySnippet bytes, with the credentials that
// overlap it masked.
func snippet(text []byte, ls, from int, echoes Echoes) string {
	if ls >= len(text) {
		return "(end)"
	}
	end := len(text)
	if j := bytes.IndexByte(text[ls:], '\n'); j >= 0 {
		end = ls + j
	}
	if from > end {
		from = end
	}
	cut := end
	more := false
	if cut-from > summarySnippet {
		cut = from + summarySnippet
		for cut > from && !utf8.RuneStart(text[cut]) {
			cut--
		}
		more = true
	}
	q := strconv.Quote(string(maskWindow(text[ls:end], from-ls, cut-ls, echoes)))
	if from > ls {
		q = "…" + q
	}
	if more {
		q += "…"
	}
	return q
}

// maskWindow returns line[from:cut] with every credential that overlaps
// it, looked for within secretReach bytes around, replaced by Redacted.
func maskWindow(line []byte, from, cut int, echoes Echoes) []byte {
	ws, we := max(0, from-secretReach), min(len(line), cut+secretReach)
	spans := secretSpans(line[ws:we], echoes)
	if len(spans) == 0 {
		return line[from:cut]
	}
	var in [][2]int
	for _, s := range spans {
		s[0], s[1] = max(s[0]+ws, from)-from, min(s[1]+ws, cut)-from
		if s[0] < s[1] {
			in = append(in, s)
		}
	}
	return maskSpans(line[from:cut], in)
}

// binarySummary gives both sides' lengths and sha256 prefixes.
func binarySummary(a, b body) string {
	return "primary " + binaryDesc(a) + ", shadow " + binaryDesc(b)
}

func binaryDesc(x body) string {
	sum := sha256.Sum256(x.b)
	n := strconv.Itoa(len(x.b)) + " bytes"
	if x.truncated {
		n = "first " + strconv.Itoa(len(x.b)) + " of " + sizeString(x.size) + " bytes"
	}
	return n + " sha256:" + hex.EncodeToString(sum[:6])
}
