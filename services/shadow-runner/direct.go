package runner

import (
	"net"
	"net/http"
	"net/url"
	"sync"

	"github.com/darklaunch/darklaunch/pkg/h1"
)

// directPools are the connections of the direct replay path (pkg/h1), one
// pool per plain-http target host. A replay that needs nothing but
// HTTP/1.1 without a body takes it: written and read on the replay's own
// goroutine, it costs about half the CPU of http.Client's hand-offs to
// its connection goroutines. Anything else (https, a body, a method that
// is not safe to send twice, RUNNER_MAX_CONNS_PER_HOST) goes through the
// http.Client. Both apply the same dialler (the target policy, at dial
// time), RUNNER_MAX_IDLE_CONNS_PER_HOST and RUNNER_IDLE_CONN_TIMEOUT.
type directPools struct {
	dial h1.DialFunc
	o    h1.Options
	off  bool // RUNNER_MAX_CONNS_PER_HOST is set: pkg/h1 does not bound connections

	mu    sync.Mutex
	pools map[string]*h1.Pool // by URL host
}

func newDirectPools(cfg *Config, tr *http.Transport) *directPools {
	return &directPools{
		dial:  tr.DialContext,
		o:     h1.Options{MaxIdle: cfg.MaxIdleConnsPerHost, IdleTimeout: cfg.IdleConnTimeout},
		off:   cfg.MaxConnsPerHost > 0,
		pools: map[string]*h1.Pool{},
	}
}

// pool returns the direct path's pool for a replay of method with a body
// of n bytes to u, or nil when the replay goes through the http.Client.
// GET, HEAD and OPTIONS without a body are the requests a pool may send
// again when a kept-alive connection turns out closed, as http.Transport
// does.
func (d *directPools) pool(u *url.URL, method string, n int) *h1.Pool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return nil
	}
	if d.off || n > 0 || u.Scheme != "http" || u.Opaque != "" || u.User != nil || u.Host == "" {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pools[u.Host]
	if p == nil {
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
		p = h1.NewPool(addr, d.dial, d.o)
		d.pools[u.Host] = p
	}
	return p
}

// closeIdle closes the idle connections of every pool.
func (d *directPools) closeIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.pools {
		p.CloseIdleConnections()
	}
}
