package launch

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/compare"
)

// Capture is a launch's capture policy: what the tap changes in a sampled
// request's headers before it captures them into the launch's envelopes
// (the primary always gets the request as the client sent it).
//
// ReplaceHeaders values are secrets (a credential for the shadow, say):
// they are stored in the launch bucket with the rest of the launch, and
// shown as RedactedHeaderValue in API answers, logs and audit details
// (Redacted).
type Capture struct {
	// DropHeaders are removed from the captured request.
	DropHeaders []string `json:"drop_headers,omitempty"`
	// ReplaceHeaders give a header present in the request another value
	// (all of its values become this one); a header the request lacks is
	// not added.
	ReplaceHeaders map[string]string `json:"replace_headers,omitempty"`
}

// Caps of a capture policy.
const (
	MaxCaptureHeaders   = 32
	MaxHeaderNameLen    = 128
	MaxReplaceValueLen  = 8192
	RedactedHeaderValue = "[redacted]"
)

// uncapturable are headers a policy may not name: the tap or the runner
// set them, or they frame the message.
var uncapturable = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "X-Darklaunch-Shadow", "X-Darklaunch-Replay"}

// IsZero reports whether the policy changes nothing.
func (c Capture) IsZero() bool { return len(c.DropHeaders) == 0 && len(c.ReplaceHeaders) == 0 }

// normalize canonicalizes the header names and checks the caps; errors
// name the field.
func (c *Capture) normalize() error {
	if n := len(c.DropHeaders) + len(c.ReplaceHeaders); n > MaxCaptureHeaders {
		return fmt.Errorf("%w: capture names %d headers, at most %d", ErrInvalid, n, MaxCaptureHeaders)
	}
	check := func(field, name string) (string, error) {
		if len(name) > MaxHeaderNameLen || !compare.ValidHeaderName(name) {
			return "", fmt.Errorf("%w: %s: %.40q is not a header name of at most %d characters", ErrInvalid, field, name, MaxHeaderNameLen)
		}
		name = http.CanonicalHeaderKey(name)
		if slices.Contains(uncapturable, name) {
			return "", fmt.Errorf("%w: %s: %s cannot be changed by a capture policy", ErrInvalid, field, name)
		}
		return name, nil
	}
	var drop []string
	for i, name := range c.DropHeaders {
		name, err := check(fmt.Sprintf("capture.drop_headers[%d]", i), name)
		if err != nil {
			return err
		}
		if !slices.Contains(drop, name) {
			drop = append(drop, name)
		}
	}
	c.DropHeaders = drop
	if len(c.ReplaceHeaders) == 0 {
		c.ReplaceHeaders = nil
		return nil
	}
	replace := make(map[string]string, len(c.ReplaceHeaders))
	for _, raw := range slices.Sorted(maps.Keys(c.ReplaceHeaders)) {
		v := c.ReplaceHeaders[raw]
		name, err := check("capture.replace_headers", raw)
		if err != nil {
			return err
		}
		field := "capture.replace_headers." + name
		switch {
		case slices.Contains(drop, name):
			return fmt.Errorf("%w: %s: the header is also in capture.drop_headers", ErrInvalid, field)
		case len(v) > MaxReplaceValueLen:
			return fmt.Errorf("%w: %s: the value is longer than %d bytes", ErrInvalid, field, MaxReplaceValueLen)
		case v == RedactedHeaderValue:
			return fmt.Errorf("%w: %s: %q is how the API shows a stored value, not a value", ErrInvalid, field, RedactedHeaderValue)
		case v == "" || !validHeaderValue(v):
			// The value is a secret: the message does not show it.
			return fmt.Errorf("%w: %s: the value must be a non-empty header value (no control characters)", ErrInvalid, field)
		}
		if _, dup := replace[name]; dup {
			return fmt.Errorf("%w: %s: named twice", ErrInvalid, field)
		}
		replace[name] = v
	}
	c.ReplaceHeaders = replace
	return nil
}

// Apply returns the captured headers under the policy: h itself when the
// policy changes nothing in it, otherwise a changed copy (h is shared
// with the other launches' envelopes of the same request).
func (c *Capture) Apply(h http.Header) http.Header {
	out, copied := h, false
	own := func() {
		if !copied {
			out, copied = h.Clone(), true
		}
	}
	for _, name := range c.DropHeaders {
		if _, ok := out[name]; ok {
			own()
			delete(out, name)
		}
	}
	for name, v := range c.ReplaceHeaders {
		if _, ok := out[name]; ok {
			own()
			out[name] = []string{v}
		}
	}
	return out
}

// keepRedacted returns the policy of a PATCH with every replacement value
// sent back as RedactedHeaderValue (as GET shows it) replaced by the value
// stored in old, so that a client can change a policy it read without
// knowing its secrets.
func (c Capture) keepRedacted(old Capture) (Capture, error) {
	out := c
	out.ReplaceHeaders = make(map[string]string, len(c.ReplaceHeaders))
	for name, v := range c.ReplaceHeaders {
		if v == RedactedHeaderValue {
			stored, ok := old.ReplaceHeaders[http.CanonicalHeaderKey(name)]
			if !ok {
				return c, fmt.Errorf("%w: capture.replace_headers.%s: %q stands for the stored value, and there is none", ErrInvalid, name, RedactedHeaderValue)
			}
			v = stored
		}
		out.ReplaceHeaders[name] = v
	}
	return out, nil
}

// Redacted is the policy with its replacement values hidden, for logs and
// audit details.
func (c Capture) Redacted() Capture {
	if len(c.ReplaceHeaders) == 0 {
		return c
	}
	r := make(map[string]string, len(c.ReplaceHeaders))
	for name := range c.ReplaceHeaders {
		r[name] = RedactedHeaderValue
	}
	c.ReplaceHeaders = r
	return c
}

// Redacted is the launch with its secrets (capture replacement values)
// hidden, for API answers, logs and audit details.
func (l *Launch) Redacted() *Launch {
	c := *l
	c.Capture = l.Capture.Redacted()
	return &c
}

// Redacted is the patch with its secrets hidden, for logs and audit
// details.
func (p Patch) Redacted() Patch {
	if p.Capture != nil {
		r := p.Capture.Redacted()
		p.Capture = &r
	}
	return p
}

// validHeaderValue: no control characters but tab, no leading or trailing
// whitespace.
func validHeaderValue(s string) bool {
	if strings.TrimSpace(s) != s {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
