// Package api holds the wire types of the reporter's HTTP API (v1,
// docs/api.md): the request bodies, the launch list, the report, the
// verdict, the examples and the error body. The reporter encodes them,
// pkg/client, darkctl, demo-load and the end-to-end tests decode them: one
// declaration each, so the two sides cannot drift.
//
// The JSON is a versioned contract polled by deploy tooling: within v1
// fields are only ever added, never renamed, removed or given another
// meaning. A launch itself is launch.Launch.
package api

import "github.com/darklaunch/darklaunch/pkg/launch"

// ErrorBody is the body of every error answer (4xx and 5xx):
// {"error": "..."}.
type ErrorBody struct {
	Error string `json:"error"`
}

// LaunchList is the body of GET /v1/launches, newest first.
type LaunchList struct {
	Launches []*launch.Launch `json:"launches"`
}
