package runner

import (
	"fmt"
	"net/http"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/seal"
)

// reasonSeal dead-letters an envelope whose sealed values do not open:
// sealed under a key id the key file does not hold, tampered, or sealed
// while the runner has no RUNNER_SEAL_KEY_FILE.
const reasonSeal = "unsealable"

// loadKeys reads RUNNER_SEAL_KEY_FILE; nil without one.
func (c *Config) loadKeys() (*seal.Keys, error) {
	if c.SealKeyFile == "" {
		return nil, nil
	}
	keys, err := seal.Load(c.SealKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: RUNNER_SEAL_KEY_FILE: %w", ErrConfig, err)
	}
	return keys, nil
}

// unseal returns the envelope to replay: env itself when nothing in it is
// sealed, otherwise a copy whose request headers are opened. env keeps its
// sealed values: it goes into the pair, and clear values never leave the
// replay.
func (s *Service) unseal(env *envelope.Envelope) (*envelope.Envelope, error) {
	if !seal.HasSealed(env.Request.Headers) {
		return env, nil
	}
	h, err := s.keys.OpenHeader(env.LaunchID, env.Request.Headers)
	if err != nil {
		return nil, fmt.Errorf("envelope %s: %w", env.ID, err)
	}
	c := *env
	c.Request.Headers = h
	return &c, nil
}

// markReplay adds the proof that this runner sent the replay (a tap that
// gets it serves it unsampled; see pkg/seal).
func (s *Service) markReplay(req *http.Request) {
	if s.keys != nil {
		req.Header.Set(seal.HeaderReplay, s.keys.Marker(req.Method, req.URL.RequestURI(), time.Now()))
	}
}

// sealOutcomes seals the sensitive values of the shadow's and the
// secondary's response headers (Set-Cookie...) like the tap seals the
// primary's, or drops them without a key file, before the pair is
// published.
func (s *Service) sealOutcomes(launchID string, outs ...*envelope.Outcome) {
	for _, o := range outs {
		if o == nil || o.Headers == nil {
			continue
		}
		for _, name := range seal.DefaultHeaders {
			if _, ok := o.Headers[name]; ok && s.keys == nil {
				delete(o.Headers, name)
			}
		}
		if s.keys != nil {
			s.keys.SealHeader(launchID, o.Headers, seal.DefaultHeaders)
		}
	}
}

// maskEchoes masks, in the shadow's and the secondary's responses (body,
// and header values other than the sensitive ones), every credential of
// the request they echo back, as the tap masked the primary's: the values
// of the headers sealed in env, opened in replayEnv (compare.HeaderEchoes,
// compare.MaskEchoesResponse). Both sides then carry the same token, and
// no clear credential leaves the runner. An envelope with nothing sealed
// (MIRROR_SEAL=off, clear capture) is left to the comparator's own echo
// masking, as its primary was.
func maskEchoes(env, replayEnv *envelope.Envelope, outs ...*envelope.Outcome) {
	if replayEnv == env {
		return
	}
	var names []string
	for name, vs := range env.Request.Headers {
		for _, v := range vs {
			if seal.IsSealed(v) {
				names = append(names, name)
				break
			}
		}
	}
	echoes := compare.HeaderEchoes(replayEnv.Request.Headers, names)
	if len(echoes) == 0 {
		return
	}
	for _, o := range outs {
		if o != nil {
			compare.MaskEchoesResponse(&o.Response, echoes, seal.DefaultHeaders)
		}
	}
}
