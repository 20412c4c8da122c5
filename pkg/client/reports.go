package client

import (
	"context"

	"github.com/darklaunch/darklaunch/pkg/api"
)

// Report returns a launch's report.
func (c *Client) Report(ctx context.Context, id string) (*api.Report, error) {
	var r api.Report
	return &r, c.Do(ctx, "GET", launchPath(id, "report"), nil, &r)
}

// Verdict returns a launch's current verdict.
func (c *Client) Verdict(ctx context.Context, id string) (*api.Verdict, error) {
	var v api.Verdict
	return &v, c.Do(ctx, "GET", launchPath(id, "verdict"), nil, &v)
}

// Examples returns the stored example pairs of one diff class (a
// fingerprint of the report's classes); none for an unknown class.
func (c *Client) Examples(ctx context.Context, id, fingerprint string) (*api.ExampleList, error) {
	var l api.ExampleList
	return &l, c.Do(ctx, "GET", launchPath(id, "examples", fingerprint), nil, &l)
}
