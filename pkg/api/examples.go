package api

import (
	"encoding/json"
	"time"
)

// ExampleList is the body of GET /v1/launches/{id}/examples/{fingerprint}.
type ExampleList struct {
	LaunchID    string    `json:"launch_id"`
	Fingerprint string    `json:"fingerprint"`
	Examples    []Example `json:"examples"`
}

// Example is one stored example pair of a diff class, as the comparator
// wrote it: headers and bodies are already redacted.
type Example struct {
	EnvelopeID string          `json:"envelope_id"`
	TS         time.Time       `json:"ts"`
	Route      string          `json:"route"`
	Method     string          `json:"method"`
	Path       string          `json:"path"`
	Query      string          `json:"query"`
	Diffs      []PathKind      `json:"diffs"`
	Request    ExampleRequest  `json:"request"`
	Primary    ExampleResponse `json:"primary"`
	Shadow     ExampleResponse `json:"shadow"`
}

// ExampleRequest is the mirrored request of an example.
type ExampleRequest struct {
	// Headers is an object of header arrays.
	Headers json.RawMessage `json:"headers"`
	Body    string          `json:"body"`
}

// ExampleResponse is one side's answer; Status 0 with Error when the
// shadow failed.
type ExampleResponse struct {
	Status  uint16          `json:"status"`
	Headers json.RawMessage `json:"headers"`
	Body    string          `json:"body"`
	Error   string          `json:"error,omitempty"`
}
