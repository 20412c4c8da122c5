package api

import (
	"encoding/json"
	"testing"
)

func TestExampleListJSON(t *testing.T) {
	h := json.RawMessage(`{"Accept":["*/*"]}`)
	l := ExampleList{LaunchID: "l", Fingerprint: "fp", Examples: []Example{{EnvelopeID: "e1", TS: t0, Route: "/a", Method: "GET",
		Path: "/a/1", Query: "x=1", Diffs: []PathKind{{Path: "$.a", Kind: "missing_field"}},
		Request: ExampleRequest{Headers: h, Body: ""}, Primary: ExampleResponse{Status: 200, Headers: h, Body: "{}"},
		Shadow: ExampleResponse{Headers: json.RawMessage(`{}`), Error: "timeout"}}}}
	checkJSON(t, l, `{"launch_id":"l","fingerprint":"fp","examples":[{"envelope_id":"e1","ts":"2026-11-26T06:00:00Z","route":"/a","method":"GET",`+
		`"path":"/a/1","query":"x=1","diffs":[{"path":"$.a","kind":"missing_field"}],"request":{"headers":{"Accept":["*/*"]},"body":""},`+
		`"primary":{"status":200,"headers":{"Accept":["*/*"]},"body":"{}"},"shadow":{"status":0,"headers":{},"body":"","error":"timeout"}}]}`)
}
