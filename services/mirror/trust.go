package mirror

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// forwardedHeaders are the headers that say who the client is; only a
// trusted proxy's are believed.
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// parseProxies reads MIRROR_TRUSTED_PROXIES: addresses or CIDRs.
func parseProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range list {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		if !strings.Contains(v, "/") {
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, fmt.Errorf("%w: MIRROR_TRUSTED_PROXIES: %q is neither an address nor a CIDR", ErrConfig, v)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("%w: MIRROR_TRUSTED_PROXIES: %q is neither an address nor a CIDR", ErrConfig, v)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// distrustForwarding removes the forwarding headers of a request that did
// not come from a trusted proxy. Four map lookups for a request without
// them; no allocation.
func (s *Service) distrustForwarding(r *http.Request) {
	h := r.Header
	if h["X-Forwarded-For"] == nil && h["Forwarded"] == nil && h["X-Forwarded-Host"] == nil && h["X-Forwarded-Proto"] == nil {
		return
	}
	if len(s.trusted) > 0 {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			a := ap.Addr().Unmap()
			for _, p := range s.trusted {
				if p.Contains(a) {
					return
				}
			}
		}
	}
	for _, name := range forwardedHeaders {
		delete(h, name)
	}
}
