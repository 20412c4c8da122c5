package mirror

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/seal"
)

// MIRROR_SEAL values.
const (
	SealAuto = "auto"
	SealOn   = "on"
	SealOff  = "off"
)

// protection is what the tap does to sensitive header values before an
// envelope leaves the process: seal them under the key file's current key,
// leave them out (no key file, MIRROR_SEAL=auto), or, with MIRROR_SEAL=off,
// nothing.
type protection struct {
	keys  *seal.Keys // nil without a key file
	clear bool       // MIRROR_SEAL=off
	names []string   // canonical header names
}

// sealing reads the sealing settings and the key file.
func (c *Config) sealing() (*protection, error) {
	p := &protection{}
	for _, h := range c.SealHeaders {
		if h = strings.TrimSpace(h); h != "" {
			p.names = append(p.names, http.CanonicalHeaderKey(h))
		}
	}
	switch c.Seal {
	case SealAuto, SealOn:
	case SealOff:
		p.clear = true
	default:
		return nil, fmt.Errorf("%w: MIRROR_SEAL %q must be auto, on or off", ErrConfig, c.Seal)
	}
	if c.SealKeyFile != "" {
		keys, err := seal.Load(c.SealKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: MIRROR_SEAL_KEY_FILE: %w", ErrConfig, err)
		}
		p.keys = keys
	} else if c.Seal == SealOn {
		return nil, fmt.Errorf("%w: MIRROR_SEAL=on needs MIRROR_SEAL_KEY_FILE", ErrConfig)
	}
	return p, nil
}

// describe says at start what happens to sensitive values.
func (p *protection) describe() (warn bool, msg string) {
	switch {
	case p.clear:
		return true, "MIRROR_SEAL=off: sensitive header values (" + strings.Join(p.names, ", ") + ") are captured in clear into envelopes"
	case p.keys == nil:
		return true, "no MIRROR_SEAL_KEY_FILE: sensitive headers (" + strings.Join(p.names, ", ") +
			") are left out of envelopes, so shadows get requests without them; give the tap and the runners a key file to seal them"
	}
	return false, "sensitive header values are sealed with key " + p.keys.CurrentID()
}

// protect seals (or leaves out) the sensitive values of an envelope's
// request and primary response headers, after masking the request's
// credentials where the primary echoes them back: those of client (the
// client's headers, before the launch's capture policy dropped or replaced
// any) and of the envelope's request headers
// (compare.MaskEchoesResponse; the shadow-runner masks the shadow's and the
// secondary's responses the same way, so both sides carry the same token). The headers
// and bodies may be shared with the other envelopes of the request: they
// are copied before a change. It runs in the publishers, never on the
// request path.
func (p *protection) protect(env *envelope.Envelope, client http.Header) {
	if p.clear {
		return
	}
	echoes := compare.HeaderEchoes(env.Request.Headers, p.names)
	if client != nil {
		echoes = append(echoes, compare.HeaderEchoes(client, p.names)...)
	}
	compare.MaskEchoesResponse(&env.Primary, echoes, p.names)
	env.Request.Headers = p.header(env.LaunchID, env.Request.Headers)
	env.Primary.Headers = p.header(env.LaunchID, env.Primary.Headers)
}

func (p *protection) header(launchID string, h http.Header) http.Header {
	var out http.Header
	for _, name := range p.names {
		if _, ok := h[name]; !ok {
			continue
		}
		if out == nil {
			out = h.Clone()
		}
		if p.keys == nil {
			delete(out, name)
		}
	}
	if out == nil {
		return h
	}
	if p.keys != nil {
		p.keys.SealHeader(launchID, out, p.names)
	}
	return out
}
