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

// ClassExamples fetches one stored example of each diff class of r that
// has some (PrintReportExamples shows each difference's before → after
// from it). A class whose examples cannot be read is left out; its error
// is passed to warn, when given.
func (c *Client) ClassExamples(ctx context.Context, r *api.Report, warn func(fingerprint string, err error)) map[string]*api.Example {
	out := map[string]*api.Example{}
	if r.Launch == nil {
		return out
	}
	for _, cl := range r.Classes {
		if len(cl.Examples) == 0 {
			continue
		}
		l, err := c.Examples(ctx, r.Launch.ID, cl.Fingerprint)
		if err != nil {
			if warn != nil {
				warn(cl.Fingerprint, err)
			}
			continue
		}
		if len(l.Examples) > 0 {
			out[cl.Fingerprint] = &l.Examples[0]
		}
	}
	return out
}
