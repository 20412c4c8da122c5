// Package envelope defines the wire format that flows through darklaunch:
// an Envelope (one sampled request with the primary's response, published by
// a tap) and a Pair (an envelope plus the shadow's answer, published by a
// shadow-runner). Both are JSON documents; bodies are base64 strings, as
// encoding/json writes []byte. The format is versioned by the "v" field;
// consumers reject versions they do not know (to the dead-letter subject).
//
// docs/envelope.md describes the format for taps written in other languages.
package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// Version is the envelope format version this package writes and reads.
const Version = 1

// DefaultBodyLimit is the default number of body bytes captured per side.
const DefaultBodyLimit = 1 << 20

// ErrMalformed is wrapped by every decoding or validation error, so callers
// can tell bad input (dead-letter it) from infrastructure errors (retry).
var ErrMalformed = errors.New("malformed message")

// Request is the client's request as the tap saw it.
type Request struct {
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	RawQuery string      `json:"query,omitempty"`
	Host     string      `json:"host,omitempty"`
	Headers  http.Header `json:"headers,omitempty"`
	Body     []byte      `json:"body,omitempty"`
	// BodySize is the full body length in bytes, known even when Body was
	// truncated (-1 when the tap could not tell).
	BodySize      int64 `json:"body_size"`
	BodyTruncated bool  `json:"body_truncated,omitempty"`
}

// Response is one side's answer: the primary's in an Envelope, the shadow's
// in a Pair.
type Response struct {
	Status        int         `json:"status"`
	Headers       http.Header `json:"headers,omitempty"`
	Body          []byte      `json:"body,omitempty"`
	BodySize      int64       `json:"body_size"`
	BodyTruncated bool        `json:"body_truncated,omitempty"`
	// LatencyUS is the time from sending the request to the end of the
	// response body, in microseconds.
	LatencyUS int64 `json:"latency_us"`
}

// Envelope is one sampled request and the primary's response.
type Envelope struct {
	V          int       `json:"v"`
	ID         string    `json:"id"`
	LaunchID   string    `json:"launch_id"`
	TapID      string    `json:"tap_id"`
	ReceivedAt time.Time `json:"received_at"`
	Request    Request   `json:"request"`
	Primary    Response  `json:"primary"`
}

// NewID returns a new envelope id: a UUIDv7, so ids sort by creation time.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system's random source fails.
		return uuid.NewString()
	}
	return id.String()
}

// Validate reports why an envelope cannot be processed, wrapping ErrMalformed.
func (e *Envelope) Validate() error {
	switch {
	case e.V != Version:
		return fmt.Errorf("%w: envelope version %d, want %d", ErrMalformed, e.V, Version)
	case e.ID == "":
		return fmt.Errorf("%w: envelope has no id", ErrMalformed)
	case e.LaunchID == "":
		return fmt.Errorf("%w: envelope %s has no launch_id", ErrMalformed, e.ID)
	case e.Request.Method == "":
		return fmt.Errorf("%w: envelope %s has no request method", ErrMalformed, e.ID)
	case e.Request.Path == "" || e.Request.Path[0] != '/':
		return fmt.Errorf("%w: envelope %s has request path %q, want an absolute path", ErrMalformed, e.ID, e.Request.Path)
	case e.ReceivedAt.IsZero():
		return fmt.Errorf("%w: envelope %s has no received_at", ErrMalformed, e.ID)
	}
	return nil
}

// Decode parses and validates an envelope.
func Decode(data []byte) (*Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: envelope is not valid JSON: %v", ErrMalformed, err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// Shadow failure kinds, recorded in Outcome.ErrorKind.
const (
	ErrorTimeout = "timeout"
	ErrorRefused = "refused"
	ErrorReset   = "reset"
	ErrorOther   = "error"
	// ErrorBlocked: the target policy refused the target (a link-local or
	// cloud metadata address, or a host outside RUNNER_ALLOWED_TARGETS),
	// before or at dial time; nothing was sent.
	ErrorBlocked = "blocked"
)

// Outcome is what one replay target (the shadow, or a secondary primary)
// answered, or why it did not.
type Outcome struct {
	Response
	// Error is empty when the target answered; otherwise a message, and
	// ErrorKind one of the Error* constants.
	Error     string `json:"error,omitempty"`
	ErrorKind string `json:"error_kind,omitempty"`
}

// Pair is an envelope with the shadow's outcome, published by shadow-runner.
type Pair struct {
	V          int       `json:"v"`
	Envelope   Envelope  `json:"envelope"`
	Shadow     Outcome   `json:"shadow"`
	Secondary  *Outcome  `json:"secondary,omitempty"`
	RunnerID   string    `json:"runner_id,omitempty"`
	ReplayedAt time.Time `json:"replayed_at"`
}

// DecodePair parses and validates a pair.
func DecodePair(data []byte) (*Pair, error) {
	var p Pair
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: pair is not valid JSON: %v", ErrMalformed, err)
	}
	if p.V != Version {
		return nil, fmt.Errorf("%w: pair version %d, want %d", ErrMalformed, p.V, Version)
	}
	if err := p.Envelope.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}
