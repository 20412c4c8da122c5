package runner

import (
	"net"
	"net/http"
	"net/url"
	"sync"

	"github.com/darklaunch/darklaunch/pkg/h1"
)

// directPools are the connections of the direct replay path (pkg/h1), one
// pool per plain-http target host. A replay to an http:// target takes
// it, whatever its method and body: written and read on the replay's own
// goroutine, without http.Client's hand-offs to its connection goroutines
// (a third of the runner's CPU). https targets and RUNNER_MAX_CONNS_PER_HOST
// go through the http.Client. Both apply the same dialler (the target
// policy, at dial time), RUNNER_MAX_IDLE_CONNS_PER_HOST and
// RUNNER_IDLE_CONN_TIMEOUT, and neither sends a request twice unless it
// is a GET, HEAD, OPTIONS or TRACE without a body (pkg/h1, Pool.Do).
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

// pool returns the direct path's pool for a replay to u, or nil when the
// replay goes through the http.Client.
func (d *directPools) pool(u *url.URL, method string) *h1.Pool {
	if d.off || method == http.MethodConnect || u.Scheme != "http" || u.Opaque != "" || u.User != nil || u.Host == "" {
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
