package mirror

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// bufSize is the copy buffer ReverseProxy uses per response; 32 KiB is what
// io.Copy would allocate on every request without a pool.
const bufSize = 32 << 10

// bufferPool recycles ReverseProxy copy buffers. It stores array pointers,
// not slices, so Put does not allocate an interface box every time.
type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[bufSize]byte); ok {
		return b[:]
	}
	return new([bufSize]byte)[:]
}

func (bp *bufferPool) Put(b []byte) {
	if len(b) == bufSize {
		bp.p.Put((*[bufSize]byte)(b))
	}
}

// newTransport returns the transport to the primary. The defaults of
// http.DefaultTransport keep 2 idle connections per host, which under load
// means a new TCP connection for most requests; the settings here keep a
// warm pool instead (see PLATFORM-NOTES).
func newTransport(cfg Config) *http.Transport {
	return &http.Transport{
		// The primary is addressed directly: an HTTP_PROXY in the tap's
		// environment must not reroute production traffic.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   cfg.DialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0, // no global cap: it would undercut MaxIdleConnsPerHost
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: 1 * time.Second,
		// Without this the transport would ask for gzip on the client's
		// behalf and transparently decompress, changing both what the
		// primary sees and what the client gets.
		DisableCompression: true,
	}
}

// newRewrite returns the Rewrite hook. The tap's aim is that the primary
// sees the request the client sent: ReverseProxy must drop hop-by-hop
// headers, but the Host, the forwarding headers an upstream load balancer
// set, and the raw query string are passed on as received unless settings
// say otherwise (forwarding headers from a peer outside MIRROR_TRUSTED_PROXIES
// are removed before, by distrustForwarding). (ReverseProxy removes query parameters it cannot parse to
// avoid smuggling between a proxy that decides on them and the backend; the
// tap decides nothing on the query, so it forwards it byte for byte.)
func newRewrite(target *url.URL, cfg Config) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.URL.RawQuery = pr.In.URL.RawQuery
		if pr.In.RequestURI == "*" {
			// OPTIONS * asks about the server, not a path: SetURL would
			// turn it into a request for "/%2A".
			pr.Out.URL.Opaque, pr.Out.URL.Path, pr.Out.URL.RawPath = "*", "", ""
		}
		if !cfg.RewriteHost {
			pr.Out.Host = pr.In.Host
		}
		for _, h := range forwardedHeaders {
			if v, ok := pr.In.Header[h]; ok {
				pr.Out.Header[h] = v
			}
		}
		if cfg.XForwarded {
			pr.SetXForwarded()
		}
	}
}

// errorHandler answers 502 when the primary cannot be reached (504 when it
// did not answer in time), as ReverseProxy's default does, but logs
// through slog and counts.
func (s *Service) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	s.stats.proxyErrors.Inc()
	if errors.Is(err, context.Canceled) {
		// The client went away; nobody is waiting for the 502.
		s.log.Debug("client gone before the primary answered", "method", r.Method, "path", r.URL.Path)
	} else {
		s.logThrottled(&s.lastProxyErrLog, slog.LevelWarn, "primary unreachable", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	gatewayError(w, err)
}

// gatewayError answers a request no upstream answered. The body is fixed
// text: the error (a dial error names internal addresses) stays in the
// tap's log.
func gatewayError(w http.ResponseWriter, err error) {
	code, msg := http.StatusBadGateway, "502 Bad Gateway: the service could not be reached\n"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		code, msg = http.StatusGatewayTimeout, "504 Gateway Timeout: the service did not answer in time\n"
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// primaryTransport is the transport to the primary. A request that needs
// nothing but plain HTTP/1.1 (http://, GET, HEAD or OPTIONS without a body,
// no upgrade, no Expect) is sent on the caller's goroutine over a pooled
// connection: the request is written and the response read where the proxy
// handler runs, with no hand-off to the writer and reader goroutines
// http.Transport keeps per connection (about a fifth of the tap's CPU per
// request under load). Anything else goes to http.Transport. Both keep
// MIRROR_MAX_IDLE_CONNS_PER_HOST idle connections for MIRROR_IDLE_CONN_TIMEOUT
// and apply MIRROR_DIAL_TIMEOUT and MIRROR_RESPONSE_HEADER_TIMEOUT.
type primaryTransport struct {
	*http.Transport // the fallback

	host string // the primary's URL host, as Rewrite sets it
	// direct: the primary is http:// without a path prefix, so a client's
	// request goes out with its own path (forward).
	direct      bool
	addr        string // host:port to dial
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration
	headerWait  time.Duration

	mu   sync.Mutex
	idle []*h1Conn // most recently used last
}

// h1Conn is a pooled connection to the primary with its buffers.
type h1Conn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// interrupt cuts a read or write in progress (the client left): made
	// once per connection, not per request.
	interrupt func()
}

func newPrimaryTransport(target *url.URL, cfg Config) *primaryTransport {
	fallback := newTransport(cfg)
	addr := target.Host
	if target.Port() == "" {
		addr = net.JoinHostPort(target.Hostname(), "80")
	}
	return &primaryTransport{
		Transport: fallback, host: target.Host, addr: addr, dial: fallback.DialContext,
		direct:  target.Scheme == "http" && (target.Path == "" || target.Path == "/") && target.RawPath == "",
		maxIdle: cfg.MaxIdleConnsPerHost, idleTimeout: cfg.IdleConnTimeout, headerWait: cfg.ResponseHeaderTimeout,
	}
}

// inline says whether req takes the direct HTTP/1.1 path.
func (t *primaryTransport) inline(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	h := req.Header
	return req.URL.Scheme == "http" && req.URL.Host == t.host && req.URL.Opaque == "" &&
		(req.Body == nil || req.Body == http.NoBody) && req.ContentLength == 0 &&
		len(req.TransferEncoding) == 0 && !req.Close && req.Trailer == nil &&
		h["Upgrade"] == nil && h["Expect"] == nil && h["Connection"] == nil
}

func (t *primaryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.inline(req) {
		return t.Transport.RoundTrip(req)
	}
	u := req.URL
	return t.do(req, requestHead{method: req.Method, path: u.EscapedPath(), rawQuery: u.RawQuery, forceQuery: u.ForceQuery,
		host: cmp.Or(req.Host, u.Host), header: req.Header}, nil)
}

// requestHead is what the direct path writes of a request (it has no body).
type requestHead struct {
	method, path, rawQuery string
	forceQuery             bool
	host                   string
	header                 http.Header
	// hop: header is a client's, with its hop-by-hop headers (and those
	// its Connection header names) still in, to leave out.
	hop bool
}

// do sends head and reads the response to req (whose method and context
// count) over a pooled connection. 1xx responses go to w when given
// (ReverseProxy's way, written by forward), else to the context's
// httptrace hook.
func (t *primaryTransport) do(req *http.Request, head requestHead, w http.ResponseWriter) (*http.Response, error) {
	ctx := req.Context()
	for {
		c, reused, err := t.conn(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(ctx, c, req, &head, w)
		if err == nil {
			return resp, nil
		}
		_ = c.c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A pooled connection the primary closed while it was idle fails
		// before any byte of a response: the request (without a body, and
		// of a replayable method) is sent again, as http.Transport does.
		if !reused || !errors.Is(err, errNothingRead) {
			return nil, err
		}
	}
}

// errNothingRead marks an exchange that failed before any byte of the
// response arrived.
var errNothingRead = errors.New("connection failed before the response")

// exchange writes head on c and reads the response head; the body streams
// from c, which returns to the pool once the body is read to its end.
func (t *primaryTransport) exchange(ctx context.Context, c *h1Conn, req *http.Request, head *requestHead, w http.ResponseWriter) (*http.Response, error) {
	// The client leaving (or a shutdown) interrupts a read or write in
	// progress, as it would cancel http.Transport's.
	stop := context.AfterFunc(ctx, c.interrupt)
	if err := writeHead(c.bw, head); err != nil {
		stop()
		return nil, fmt.Errorf("%w: write: %w", errNothingRead, err)
	}
	if t.headerWait > 0 {
		_ = c.c.SetReadDeadline(time.Now().Add(t.headerWait))
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
		// 1xx (103 Early Hints): passed on as ReverseProxy does, then the
		// final response follows.
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
	if t.headerWait > 0 {
		_ = c.c.SetReadDeadline(time.Time{})
	}
	b := &h1Body{rc: resp.Body, t: t, c: c, stop: stop, reuse: !resp.Close}
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

// hopHeaders are the hop-by-hop headers ReverseProxy removes.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// writeHead writes a request head as http.Request.Write would for a
// client request without a body, and without its allocations: the request
// line, Host, User-Agent only when set (ReverseProxy sets an empty one so
// that Go's is not added), then the other headers; with head.hop, without
// the hop-by-hop ones, keeping "Te: trailers" as ReverseProxy does.
func writeHead(bw *bufio.Writer, head *requestHead) error {
	bw.WriteString(head.method)
	bw.WriteByte(' ')
	if head.path != "" {
		bw.WriteString(head.path)
	} else {
		bw.WriteByte('/')
	}
	if head.forceQuery || head.rawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(head.rawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	writeValue(bw, head.host)
	bw.WriteString("\r\n")
	h := head.header
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
		if head.hop && (slices.Contains(hopHeaders, k) || namedIn(connection, k)) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	if head.hop && hasToken(h["Te"], "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// namedIn says whether a Connection header's values name the header k.
func namedIn(connection []string, k string) bool {
	return len(connection) > 0 && hasToken(connection, k)
}

// hasToken says whether comma-separated values hold token (any case).
func hasToken(values []string, token string) bool {
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
// as http.Header.Write does (net/http never hands the tap such a value; a
// Rewrite could).
func writeValue(bw *bufio.Writer, v string) {
	if !strings.ContainsAny(v, "\r\n") {
		bw.WriteString(v)
		return
	}
	bw.WriteString(strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
}

// conn returns an idle connection to the primary, or a new one.
func (t *primaryTransport) conn(ctx context.Context) (*h1Conn, bool, error) {
	now := time.Now()
	t.mu.Lock()
	for n := len(t.idle); n > 0; n = len(t.idle) {
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		if t.idleTimeout > 0 && now.Sub(c.idleAt) > t.idleTimeout {
			// The rest of the stack is older still.
			stale := append([]*h1Conn{c}, t.idle...)
			clear(t.idle)
			t.idle = t.idle[:0]
			t.mu.Unlock()
			for _, c := range stale {
				_ = c.c.Close()
			}
			t.mu.Lock()
			continue
		}
		t.mu.Unlock()
		return c, true, nil
	}
	t.mu.Unlock()
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, false, err
	}
	c := &h1Conn{c: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}
	c.interrupt = func() { _ = nc.SetDeadline(aLongTimeAgo) }
	return c, false, nil
}

// put returns a connection whose last response was read to its end.
func (t *primaryTransport) put(c *h1Conn) {
	c.idleAt = time.Now()
	t.mu.Lock()
	if len(t.idle) < t.maxIdle {
		t.idle = append(t.idle, c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	_ = c.c.Close()
}

// CloseIdleConnections closes the idle connections of both paths.
func (t *primaryTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		_ = c.c.Close()
	}
	t.Transport.CloseIdleConnections()
}

// h1Body is a response body on the direct path: read to its end, it hands
// the connection back to the pool; closed before, it closes the connection
// (draining an unknown rest would hold the handler).
type h1Body struct {
	rc    io.ReadCloser
	t     *primaryTransport
	c     *h1Conn
	stop  func() bool
	reuse bool
	done  bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *h1Body) finish(eof bool) {
	b.done = true
	// stop is false when the context's interruption ran: the connection's
	// deadline is spoiled.
	if b.stop() && eof && b.reuse && b.c.br.Buffered() == 0 {
		b.t.put(b.c)
		return
	}
	_ = b.c.c.Close()
}

// forward serves a request as s.plain (ReverseProxy with the tap's
// Rewrite) would, or with t, as s.tapped would, capturing the exchange
// into t; without their copies: the request goes out
// from the client's own (no Request clone, no header map clone; hop-by-hop
// headers are left out as it is written) and the primary's response
// header map becomes the client's. It returns false, having done nothing,
// for a request it leaves to s.plain: one with a body, an upgrade, an
// Expect, OPTIONS *, to a primary that is https:// or has a path prefix,
// or with MIRROR_X_FORWARDED on.
func (s *Service) forward(w http.ResponseWriter, r *http.Request, t *tap) bool {
	tr := s.transport
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	h := r.Header
	if !tr.direct || s.cfg.XForwarded || r.ContentLength != 0 || len(r.TransferEncoding) != 0 || r.URL.Opaque != "" ||
		r.RequestURI == "*" || h["Upgrade"] != nil || h["Expect"] != nil {
		return false
	}
	// An HTTP/1.0 request may come without Host: the primary's is sent,
	// as http.Request.Write does for ReverseProxy.
	host := cmp.Or(r.Host, tr.host)
	if s.cfg.RewriteHost {
		host = tr.host
	}
	u := r.URL
	resp, err := tr.do(r, requestHead{method: r.Method, path: u.EscapedPath(), rawQuery: u.RawQuery, forceQuery: u.ForceQuery,
		host: host, header: h, hop: true}, w)
	if err != nil {
		if t != nil {
			t.failed(err)
		}
		s.errorHandler(w, r, err)
		return true
	}
	removeHopByHop(resp.Header)
	if t != nil {
		t.response(resp, true)
	}
	out := w.Header()
	for k, v := range resp.Header {
		out[k] = v // the response is ours: its slices need no copy
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		out.Add("Trailer", strings.Join(slices.Collect(maps.Keys(resp.Trailer)), ", "))
	}
	w.WriteHeader(resp.StatusCode)
	// As ReverseProxy: flush every write of a stream (no length, or
	// server-sent events), none otherwise.
	flush := resp.ContentLength == -1
	if !flush {
		if ct := resp.Header["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream") {
			flush = true
		}
	}
	buf := s.pool.Get()
	err = copyBody(w, resp.Body, buf, flush)
	s.pool.Put(buf)
	resp.Body.Close()
	if err != nil {
		// A response cut short must look cut short to the client, as
		// ReverseProxy makes it: the connection is aborted.
		if r.Context().Err() == nil { // not the client leaving
			s.logThrottled(&s.lastProxyErrLog, slog.LevelWarn, "response from the primary cut off", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
	if len(resp.Trailer) > 0 {
		// Chunked, so that the trailers can follow.
		_ = http.NewResponseController(w).Flush()
		if len(resp.Trailer) == announced {
			for k, v := range resp.Trailer {
				out[k] = v
			}
		} else {
			for k, vs := range resp.Trailer {
				for _, v := range vs {
					out.Add(http.TrailerPrefix+k, v)
				}
			}
		}
	} else if t != nil {
		// The client gets the end of its response now, not after the tap
		// has built and queued its envelopes (when the handler returns).
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	return true
}

// copyBody copies the primary's response body to the client through buf.
func copyBody(w http.ResponseWriter, body io.Reader, buf []byte, flush bool) error {
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if flush {
				_ = http.NewResponseController(w).Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// removeHopByHop removes a response's hop-by-hop headers, and those its
// Connection header names, as ReverseProxy does.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}
