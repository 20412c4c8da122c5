package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Request smuggling guard. net/http accepts a request with both
// Content-Length and Transfer-Encoding (it drops Content-Length) and a
// Transfer-Encoding written "\tchunked" (it trims the tab); a load
// balancer in front of the tap may frame the same bytes differently, and
// the two would disagree on where the next request starts. The tap refuses
// every request whose framing is ambiguous, before net/http parses it: the
// listener's connections follow the HTTP/1.1 framing of the bytes they
// read (header block, then Content-Length bytes or chunks), and a header
// block with
//
//   - more than one Transfer-Encoding, or one whose value is anything but
//     "chunked" (case-insensitive, spaces around it allowed, no tab),
//   - Transfer-Encoding and Content-Length together,
//   - Transfer-Encoding in an HTTP/1.0 request,
//   - more than one Content-Length, or one that is not a decimal number,
//   - a folded (obs-fold) Transfer-Encoding or Content-Length line, or
//     whitespace between either name and its colon,
//
// or a chunked body that does not parse, gets a 400 with the reason and
// the connection is closed: it is neither forwarded nor sampled.
//
// The check runs on bytes net/http reads anyway: per header line, one
// IndexByte and a look at the first byte; body bytes are skipped by
// count. It does not allocate. A connection the handler hijacks (an
// upgrade to WebSocket) is no longer HTTP/1 and is left alone.

var errAmbiguousFraming = errors.New("ambiguous request framing")

// guardListener wraps the proxy's listener with framing guards.
type guardListener struct {
	net.Listener
	s *Service
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, s: l.s, f: frame{start: true}}, nil
}

// connState is the proxy server's ConnState hook: it tells a guard whether
// a request is being served (its response may be on the wire) and when the
// connection was hijacked.
func connState(c net.Conn, st http.ConnState) {
	g, ok := c.(*guardConn)
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		g.active.Store(true)
	case http.StateIdle:
		g.active.Store(false)
	case http.StateHijacked:
		g.off.Store(true)
	}
}

type guardConn struct {
	net.Conn
	s *Service
	// off: hijacked, no longer checked. active: a request is being
	// served, so the 400 cannot be written (it would interleave with
	// that response): the connection is only cut.
	off, active atomic.Bool
	// f is touched by Read only; net/http never reads a connection from
	// two goroutines at once.
	f frame
}

func (g *guardConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if n > 0 && !g.off.Load() {
		if reason := g.f.scan(p[:n]); reason != "" {
			g.reject(reason)
			return 0, &net.OpError{Op: "read", Net: "tcp", Addr: g.LocalAddr(), Err: errAmbiguousFraming}
		}
	}
	return n, err
}

// reject answers 400 (unless a response is in progress) and counts.
func (g *guardConn) reject(reason string) {
	g.s.stats.framingRejected.Inc()
	g.s.logThrottled(&g.s.lastFramingLog, slog.LevelWarn, "request refused: ambiguous framing (request smuggling?)",
		"reason", reason, "remote", g.RemoteAddr().String())
	if g.active.Load() {
		return
	}
	body := "400 Bad Request: " + reason + "; the request was refused\n"
	_ = g.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = fmt.Fprintf(g.Conn, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// Framing modes.
const (
	modeHeader    = iota // in a header block
	modeBody             // remain bytes of a Content-Length body
	modeChunkSize        // a chunk-size line
	modeChunkData        // remain bytes of chunk data, then CRLF
	modeTrailer          // trailer lines after the last chunk
)

// lineHead is how much of a line split across reads is kept: enough for
// the names and values the guard looks at.
const lineHead = 128

// frame follows one connection's request framing.
type frame struct {
	mode   uint8
	remain int64 // body bytes, or chunk bytes plus their CRLF

	// The line being read when a read ended in its middle.
	partial bool
	n       int
	head    [lineHead]byte
	tail    [10]byte // the last bytes of the line (" HTTP/1.0\r")
	tailN   int

	// The header block so far.
	start      bool // the next non-empty line is a request line
	te, cl     int
	teOK       bool
	clVal      int64
	clBad      bool
	http10     bool
	lastFramed bool // the previous line was Transfer-Encoding or Content-Length
	reason     string
}

// scan follows p, returning why the framing is refused ("" when it is not).
func (f *frame) scan(p []byte) string {
	for len(p) > 0 {
		switch f.mode {
		case modeBody, modeChunkData:
			k := int64(len(p))
			if k > f.remain {
				k = f.remain
			}
			p = p[k:]
			f.remain -= k
			if f.remain == 0 {
				if f.mode == modeBody {
					f.mode, f.start = modeHeader, true
				} else {
					f.mode = modeChunkSize
				}
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.keep(p)
			return ""
		}
		line := p[:i]
		p = p[i+1:]
		if len(line) > lineHead && (f.mode != modeHeader || !f.start) {
			// Only a line's head counts, however the line arrived.
			line = line[:lineHead]
		}
		if f.partial {
			f.keep(line)
			f.partial = false
			if f.n < lineHead || f.mode != modeHeader || !f.start {
				line = f.head[:f.n]
			} else {
				line = f.tail[:f.tailN] // a long request line: its end has the version
			}
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if r := f.line(line); r != "" {
			return r
		}
	}
	return ""
}

// keep stores the head and the tail of a line split across reads.
func (f *frame) keep(b []byte) {
	if !f.partial {
		f.partial, f.n, f.tailN = true, 0, 0
	}
	f.n += copy(f.head[f.n:], b)
	if len(b) >= len(f.tail) {
		f.tailN = copy(f.tail[:], b[len(b)-len(f.tail):])
		return
	}
	if drop := f.tailN + len(b) - len(f.tail); drop > 0 {
		copy(f.tail[:], f.tail[drop:f.tailN])
		f.tailN -= drop
	}
	f.tailN += copy(f.tail[f.tailN:], b)
}

// line handles one complete line (without its line ending).
func (f *frame) line(l []byte) string {
	switch f.mode {
	case modeChunkSize:
		size, ok := chunkSize(l)
		if !ok {
			return "malformed chunked body"
		}
		if size == 0 {
			f.mode = modeTrailer
		} else {
			f.mode, f.remain = modeChunkData, size+2 // the data and its CRLF
		}
		return ""
	case modeTrailer:
		if len(l) == 0 {
			f.mode, f.start = modeHeader, true
		}
		return ""
	}
	if f.start {
		if len(l) == 0 {
			return "" // blank lines before a request line
		}
		f.start = false
		f.te, f.cl, f.teOK, f.clVal, f.clBad, f.lastFramed = 0, 0, false, 0, false, false
		f.http10 = bytes.HasSuffix(l, []byte(" HTTP/1.0"))
		return ""
	}
	if len(l) == 0 {
		return f.endBlock()
	}
	if l[0] == ' ' || l[0] == '\t' {
		if f.lastFramed {
			return "folded Transfer-Encoding or Content-Length header"
		}
		return ""
	}
	f.lastFramed = false
	c := l[0] | 0x20
	if c != 't' && c != 'c' {
		return ""
	}
	colon := bytes.IndexByte(l, ':')
	if colon < 0 {
		return ""
	}
	name, value := l[:colon], l[colon+1:]
	trimmed := bytes.TrimRight(name, " \t")
	switch {
	case asciiEqualFold(trimmed, "transfer-encoding"):
		f.lastFramed = true
		f.te++
		f.teOK = len(trimmed) == len(name) && asciiEqualFold(bytes.Trim(value, " "), "chunked") && bytes.IndexByte(value, '\t') < 0
	case asciiEqualFold(trimmed, "content-length"):
		f.lastFramed = true
		f.cl++
		n, ok := decimal(bytes.Trim(value, " \t"))
		f.clBad = f.clBad || !ok || len(trimmed) != len(name)
		f.clVal = n
	}
	return ""
}

// endBlock judges a complete header block and sets the body's framing.
func (f *frame) endBlock() string {
	f.start = true
	switch {
	case f.te > 1:
		return "more than one Transfer-Encoding header"
	case f.te == 1 && f.cl > 0:
		return "both Content-Length and Transfer-Encoding"
	case f.te == 1 && !f.teOK:
		return "Transfer-Encoding other than a plain \"chunked\""
	case f.te == 1 && f.http10:
		return "Transfer-Encoding in an HTTP/1.0 request"
	case f.cl > 1:
		return "more than one Content-Length header"
	case f.clBad:
		return "invalid Content-Length"
	case f.te == 1:
		f.mode, f.start = modeChunkSize, false
	case f.clVal > 0:
		f.mode, f.remain, f.start = modeBody, f.clVal, false
	}
	return ""
}

// chunkSize parses a chunk-size line: hex digits, optional extensions.
func chunkSize(l []byte) (int64, bool) {
	if i := bytes.IndexByte(l, ';'); i >= 0 {
		l = l[:i]
	}
	l = bytes.TrimRight(l, " \t")
	if len(l) == 0 || len(l) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range l {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int64(c-'0')
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			n = n<<4 | int64(c|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// decimal parses a Content-Length: digits only, at most 18 of them.
func decimal(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// asciiEqualFold compares b with a lower-case ASCII name.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
