package mirror

import (
	"cmp"
	"context"
	"errors"
	"github.com/darklaunch/darklaunch/pkg/h1"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
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
	direct bool
	pool   *h1.Pool // the direct path's connections
}

func newPrimaryTransport(target *url.URL, cfg Config) *primaryTransport {
	fallback := newTransport(cfg)
	addr := target.Host
	if target.Port() == "" {
		addr = net.JoinHostPort(target.Hostname(), "80")
	}
	return &primaryTransport{
		Transport: fallback, host: target.Host,
		direct: target.Scheme == "http" && (target.Path == "" || target.Path == "/") && target.RawPath == "",
		pool: h1.NewPool(addr, fallback.DialContext, h1.Options{
			MaxIdle: cfg.MaxIdleConnsPerHost, IdleTimeout: cfg.IdleConnTimeout, ResponseHeaderTimeout: cfg.ResponseHeaderTimeout}),
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
	return t.pool.Do(req, &h1.Head{Method: req.Method, Path: u.EscapedPath(), RawQuery: u.RawQuery, ForceQuery: u.ForceQuery,
		Host: cmp.Or(req.Host, u.Host), Header: req.Header}, nil)
}

// CloseIdleConnections closes the idle connections of both paths.
func (t *primaryTransport) CloseIdleConnections() {
	t.pool.CloseIdleConnections()
	t.Transport.CloseIdleConnections()
}

// directBodyMax is the largest request body the direct path sends. It is
// sent whole before the response is read, so it must fit in the socket's
// buffers even when the primary answers without reading it (a 401 or 413
// to an upload): http.Transport, which writes and reads at once, takes
// larger ones.
const directBodyMax = 64 << 10

// forward serves a request as s.plain (ReverseProxy with the tap's
// Rewrite) would, or with t, as s.tapped would, capturing the exchange
// into t; without their copies: the request goes out
// from the client's own (no Request clone, no header map clone; hop-by-hop
// headers are left out as it is written) and the primary's response
// header map becomes the client's. It returns false, having done nothing,
// for a request it leaves to s.plain: CONNECT, one with a body of unknown
// length or over directBodyMax, an upgrade, an Expect, OPTIONS *, to a
// primary that is https:// or has a path prefix, or with
// MIRROR_X_FORWARDED on.
func (s *Service) forward(w http.ResponseWriter, r *http.Request, t *tap) bool {
	tr := s.transport
	h := r.Header
	if !tr.direct || s.cfg.XForwarded || r.Method == http.MethodConnect || r.ContentLength < 0 || r.ContentLength > directBodyMax ||
		len(r.TransferEncoding) != 0 || r.URL.Opaque != "" || r.RequestURI == "*" || h["Upgrade"] != nil || h["Expect"] != nil {
		return false
	}
	// An HTTP/1.0 request may come without Host: the primary's is sent,
	// as http.Request.Write does for ReverseProxy.
	host := cmp.Or(r.Host, tr.host)
	if s.cfg.RewriteHost {
		host = tr.host
	}
	u := r.URL
	head := &h1.Head{Method: r.Method, Path: u.EscapedPath(), RawQuery: u.RawQuery, ForceQuery: u.ForceQuery,
		Host: host, Header: h, Hop: true}
	if r.ContentLength > 0 {
		head.Stream, head.StreamLength = r.Body, r.ContentLength
	}
	resp, err := tr.pool.Do(r, head, w)
	if errors.Is(err, h1.ErrRequestBody) {
		// The client's upload ended before its Content-Length (cut off by
		// MIRROR_BODY_READ_TIMEOUT, or broken; net/http has cancelled the
		// request's context): its fault, not the primary's, which got no
		// whole request. A sample of it is dropped as client_abort
		// (tap.outcome). The 408 or 400 reaches a client still waiting.
		s.log.Debug("request body ended before its Content-Length", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Connection", "close")
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// As nginx answers a client_body_timeout.
			http.Error(w, "408 Request Timeout: the request body did not arrive in time", http.StatusRequestTimeout)
		} else {
			http.Error(w, "400 Bad Request: the request body ended before its Content-Length", http.StatusBadRequest)
		}
		return true
	}
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
	for _, k := range h1.HopHeaders {
		delete(h, k)
	}
}
