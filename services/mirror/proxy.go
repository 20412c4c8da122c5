package mirror

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
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
