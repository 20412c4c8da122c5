package mirror

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/pkg/seal"
)

// Replay markers. A runner's replay carries X-Darklaunch-Shadow: 1 and,
// when the runner has the key file, an X-Darklaunch-Replay proof
// (pkg/seal). A request that reaches a tap with a proof that verifies is a
// replay: it is served (routed as any request) but never sampled, so a
// launch whose shadow is a tap (itself, or another one) cannot loop, and
// its markers reach the backend. Markers without a valid proof were sent
// by a client: they are removed, so no backend takes the request for a
// replay, and the request is handled as any client's. Without a key file
// a replay cannot be told from a client's request: the markers are
// removed and the request is not sampled (a client can keep its own
// requests out of the sample, nothing more).
const (
	headerShadow = "X-Darklaunch-Shadow"
	headerReplay = seal.HeaderReplay
)

// replay reports whether r is to be served without sampling. It costs two
// map lookups for a request without markers.
func (s *Service) replay(r *http.Request) bool {
	shadow, proof := r.Header[headerShadow], r.Header[headerReplay]
	if shadow == nil && proof == nil {
		return false
	}
	keys := s.protection.keys
	if keys != nil && shadow != nil && len(proof) == 1 {
		err := keys.VerifyMarker(proof[0], r.Method, r.RequestURI, time.Now())
		if err == nil {
			s.stats.replays.Inc()
			return true
		}
		s.logThrottled(&s.lastMarkerLog, slog.LevelWarn, "replay marker refused; the request is handled as a client's",
			"err", err, "remote", r.RemoteAddr)
	}
	delete(r.Header, headerShadow)
	delete(r.Header, headerReplay)
	s.stats.markersRemoved.Inc()
	return keys == nil
}

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
