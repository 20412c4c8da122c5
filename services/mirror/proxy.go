package mirror

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
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

	host        string // the primary's URL host, as Rewrite sets it
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
}

func newPrimaryTransport(target *url.URL, cfg Config) *primaryTransport {
	fallback := newTransport(cfg)
	addr := target.Host
	if target.Port() == "" {
		addr = net.JoinHostPort(target.Hostname(), "80")
	}
	return &primaryTransport{
		Transport: fallback, host: target.Host, addr: addr, dial: fallback.DialContext,
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
	ctx := req.Context()
	for {
		c, reused, err := t.conn(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(ctx, c, req)
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

// exchange writes req on c and reads the response head; the body streams
// from c, which returns to the pool once the body is read to its end.
func (t *primaryTransport) exchange(ctx context.Context, c *h1Conn, req *http.Request) (*http.Response, error) {
	// The client leaving (or a shutdown) interrupts a read or write in
	// progress, as it would cancel http.Transport's.
	stop := context.AfterFunc(ctx, func() { _ = c.c.SetDeadline(aLongTimeAgo) })
	if err := writeRequest(c.bw, req); err != nil {
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
		// 1xx (103 Early Hints): passed on as ReverseProxy does with
		// http.Transport, then the final response follows.
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
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

// writeRequest writes req's head (it has no body) as http.Request.Write
// would for a client request, without its allocations: the request line
// with the URL's request URI, Host, User-Agent only when set (ReverseProxy
// sets an empty one so that Go's is not added), then the other headers.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	u := req.URL
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	if p := u.EscapedPath(); p != "" {
		bw.WriteString(p)
	} else {
		bw.WriteByte('/')
	}
	if u.ForceQuery || u.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(u.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	host := req.Host
	if host == "" {
		host = u.Host
	}
	writeValue(bw, host)
	bw.WriteString("\r\n")
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		bw.WriteString("User-Agent: ")
		writeValue(bw, ua[0])
		bw.WriteString("\r\n")
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
	return bw.Flush()
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
	return &h1Conn{c: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, false, nil
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
