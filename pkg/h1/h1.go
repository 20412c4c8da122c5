// Package h1 sends HTTP/1.1 requests, with no body or one held in memory,
// to one plain-http address on the caller's goroutine, over pooled
// keep-alive connections.
//
// http.Transport hands every request to a writer and a reader goroutine
// of its connection and back; for small exchanges those hand-offs cost
// about as much as the exchange itself (a fifth of the mirror's CPU per
// request, a third of the shadow-runner's). A Pool writes the request
// and reads the response where Do is called, and returns the connection
// to the pool once the body was read to its end. It does no TLS, no
// HTTP/2, no proxies, no redirects, no upgrades and no request bodies of
// unknown length: callers send anything else through http.Transport.
package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options tune a Pool; the zero value keeps no idle connection and waits
// for a response head as long as the request's context allows.
type Options struct {
	// MaxIdle is the most idle connections kept; IdleTimeout how long one
	// is kept (0: no limit).
	MaxIdle     int
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response head after
	// the request was written (0: none beyond the context).
	ResponseHeaderTimeout time.Duration
}

// DialFunc dials a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Pool is the connections to one address. It is safe for concurrent use.
type Pool struct {
	addr string
	dial DialFunc
	o    Options

	mu   sync.Mutex
	idle []*conn // most recently used last
}

// NewPool returns a pool of connections to addr (host:port), dialled with
// dial.
func NewPool(addr string, dial DialFunc, o Options) *Pool {
	return &Pool{addr: addr, dial: dial, o: o}
}

// conn is a pooled connection with its buffers.
type conn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// interrupt cuts a read or write in progress (the context ended):
	// made once per connection, not per request.
	interrupt func()
}

// Head is what Do writes of a request.
type Head struct {
	Method, Path, RawQuery string
	ForceQuery             bool
	Host                   string
	Header                 http.Header
	// Body is sent with its Content-Length, as http.Request.Write sends
	// a body whose length is known: none for an empty body, except that
	// POST, PUT and PATCH say "Content-Length: 0".
	Body []byte
	// Stream, when not nil, is the body instead, StreamLength bytes read
	// as they are sent (a client's upload): a request with one is never
	// sent twice. A stream that ends early fails Do with ErrRequestBody.
	Stream       io.Reader
	StreamLength int64
	// Hop: Header is a client's, with its hop-by-hop headers (and those
	// its Connection header names) still in, to leave out as it is
	// written ("Te: trailers" is kept, as httputil.ReverseProxy does).
	Hop bool
}

// Do writes head on a pooled or new connection and reads the response
// head; the body streams from the connection, which returns to the pool
// once the body is read to its end (closed before, the connection is
// closed). req gives the context, which interrupts a read or write in
// progress when it ends, and the method the response is read for. 1xx
// responses go to w when given (as httputil.ReverseProxy passes them on),
// else to the context's httptrace hook. A pooled connection the server
// closed while idle fails before any byte of a response: the request is
// sent again on another when that cannot do it twice, as http.Transport
// does: when writing it failed, or when it is a GET, HEAD, OPTIONS or
// TRACE without a body.
func (p *Pool) Do(req *http.Request, head *Head, w http.ResponseWriter) (*http.Response, error) {
	ctx := req.Context()
	for {
		c, reused, err := p.conn(ctx)
		if err != nil {
			return nil, err
		}
		if reused && !head.replayable() && !c.alive() {
			// Found dead before a request that may not be sent twice.
			_ = c.c.Close()
			continue
		}
		resp, err := p.exchange(ctx, c, req, head, w)
		if err == nil {
			return resp, nil
		}
		_ = c.c.Close()
		if errors.Is(err, ErrRequestBody) {
			// Said first: a failed read of a client's body also cancels
			// its request's context (net/http).
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !reused || head.Stream != nil || !(errors.Is(err, errNotSent) || errors.Is(err, errNothingRead) && head.replayable()) {
			return nil, err
		}
	}
}

// Idle is the number of idle connections in the pool.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// CloseIdleConnections closes the idle connections.
func (p *Pool) CloseIdleConnections() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.c.Close()
	}
}

// errNothingRead marks an exchange that failed before any byte of the
// response arrived; errNotSent one whose request could not be written (a
// request cut short is not one the server can act on).
var (
	errNothingRead = errors.New("connection failed before the response")
	errNotSent     = fmt.Errorf("%w: write", errNothingRead)
)

// ErrRequestBody is a request body stream that ended, or failed, before
// its StreamLength: the caller's (its client's) failure, not the server's.
var ErrRequestBody = errors.New("request body ended before its length")

// replayable says whether the request may be sent twice: a safe method
// without a body.
func (h *Head) replayable() bool {
	switch h.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return len(h.Body) == 0 && h.Stream == nil
	}
	return false
}

// exchange writes head on c and reads the response head.
func (p *Pool) exchange(ctx context.Context, c *conn, req *http.Request, head *Head, w http.ResponseWriter) (*http.Response, error) {
	stop := context.AfterFunc(ctx, c.interrupt)
	if err := writeHead(c.bw, head); err != nil {
		stop()
		if errors.Is(err, ErrRequestBody) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errNotSent, err)
	}
	if p.o.ResponseHeaderTimeout > 0 {
		_ = c.c.SetReadDeadline(time.Now().Add(p.o.ResponseHeaderTimeout))
	}
	if _, err := c.br.Peek(1); err != nil {
		stop()
		return nil, fmt.Errorf("%w: %w", errNothingRead, err)
	}
	var resp *http.Response
	var err error
	for range max1xx {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx (103 Early Hints): passed on, then the final response
		// follows.
		if w != nil {
			h := w.Header()
			maps.Copy(h, resp.Header)
			w.WriteHeader(resp.StatusCode)
			clear(h)
		} else if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err = trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				break
			}
		}
		resp = nil
	}
	if err == nil && resp == nil {
		err = errors.New("too many 1xx responses")
	}
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		err = errors.New("101 Switching Protocols to a request without Upgrade")
	}
	if err != nil {
		stop()
		return nil, err
	}
	if p.o.ResponseHeaderTimeout > 0 {
		_ = c.c.SetReadDeadline(time.Time{})
	}
	b := &body{rc: resp.Body, p: p, c: c, stop: stop, reuse: !resp.Close}
	if resp.Body == http.NoBody {
		b.finish(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// max1xx bounds the informational responses before the final one.
const max1xx = 10

// aLongTimeAgo is a deadline in the past: it interrupts a blocked read or
// write at once.
var aLongTimeAgo = time.Unix(1, 0)

// HopHeaders are the hop-by-hop headers (RFC 9110 section 7.6.1), as
// httputil.ReverseProxy removes them.
var HopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// writeHead writes a request as http.Request.Write would for a client
// request with no body or one of known length, and without its allocations: the request
// line, Host, User-Agent only when set (ReverseProxy sets an empty one so
// that Go's is not added), then the other headers; with head.Hop, without
// the hop-by-hop ones, keeping "Te: trailers" as ReverseProxy does.
func writeHead(bw *bufio.Writer, head *Head) error {
	bw.WriteString(head.Method)
	bw.WriteByte(' ')
	if head.Path != "" {
		bw.WriteString(head.Path)
	} else {
		bw.WriteByte('/')
	}
	if head.ForceQuery || head.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(head.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	writeValue(bw, head.Host)
	bw.WriteString("\r\n")
	h := head.Header
	if ua := h["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		bw.WriteString("User-Agent: ")
		writeValue(bw, ua[0])
		bw.WriteString("\r\n")
	}
	connection := h["Connection"]
	for k, vs := range h {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if head.Hop && (slices.Contains(HopHeaders, k) || NamedIn(connection, k)) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	if head.Hop && HasToken(h["Te"], "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	n := int64(len(head.Body))
	if head.Stream != nil {
		n = head.StreamLength
	}
	if n > 0 || head.Method == http.MethodPost || head.Method == http.MethodPut || head.Method == http.MethodPatch {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), n, 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if head.Stream == nil {
		bw.Write(head.Body)
		return bw.Flush()
	}
	src := &streamReader{r: head.Stream}
	if _, err := io.CopyN(bw, src, n); err != nil {
		if src.err != nil {
			return fmt.Errorf("%w: %w", ErrRequestBody, src.err)
		}
		return err
	}
	return bw.Flush()
}

// streamReader keeps the error of the stream it reads, so that a failed
// copy tells the body's failure from the connection's.
type streamReader struct {
	r   io.Reader
	err error
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

// NamedIn says whether a Connection header's values name the header k.
func NamedIn(connection []string, k string) bool {
	return len(connection) > 0 && HasToken(connection, k)
}

// HasToken says whether comma-separated values hold token (any case).
func HasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// writeValue writes a header value with any CR or LF turned into a space,
// as http.Header.Write does.
func writeValue(bw *bufio.Writer, v string) {
	if !strings.ContainsAny(v, "\r\n") {
		bw.WriteString(v)
		return
	}
	bw.WriteString(strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
}

// conn returns an idle connection, or a new one.
func (p *Pool) conn(ctx context.Context) (*conn, bool, error) {
	now := time.Now()
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if p.o.IdleTimeout > 0 && now.Sub(c.idleAt) > p.o.IdleTimeout {
			// The rest of the stack is older still.
			stale := append([]*conn{c}, p.idle...)
			clear(p.idle)
			p.idle = p.idle[:0]
			p.mu.Unlock()
			for _, c := range stale {
				_ = c.c.Close()
			}
			p.mu.Lock()
			continue
		}
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	nc, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	c := &conn{c: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}
	c.interrupt = func() { _ = nc.SetDeadline(aLongTimeAgo) }
	return c, false, nil
}

// put returns a connection whose last response was read to its end.
func (p *Pool) put(c *conn) {
	c.idleAt = time.Now()
	p.mu.Lock()
	if len(p.idle) < p.o.MaxIdle {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = c.c.Close()
}

// body is a response body: read to its end, it hands the connection back
// to the pool; closed before, it closes the connection (draining an
// unknown rest would hold the caller).
type body struct {
	rc    io.ReadCloser
	p     *Pool
	c     *conn
	stop  func() bool
	reuse bool
	done  bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
	}
	return n, err
}

func (b *body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *body) finish(eof bool) {
	b.done = true
	// stop is false when the context's interruption ran: the connection's
	// deadline is spoiled.
	if b.stop() && eof && b.reuse && b.c.br.Buffered() == 0 {
		b.p.put(b.c)
		return
	}
	_ = b.c.c.Close()
}
