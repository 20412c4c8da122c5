package client

import (
	"context"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// Create creates a launch (POST /v1/launches) and returns it as stored:
// active, with its id.
func (c *Client) Create(ctx context.Context, req api.CreateRequest) (*launch.Launch, error) {
	var l launch.Launch
	return &l, c.Do(ctx, "POST", "/v1/launches", req, &l)
}

// List returns every launch, newest first.
func (c *Client) List(ctx context.Context) ([]*launch.Launch, error) {
	var out api.LaunchList
	return out.Launches, c.Do(ctx, "GET", "/v1/launches", nil, &out)
}

// Get returns one launch.
func (c *Client) Get(ctx context.Context, id string) (*launch.Launch, error) {
	var l launch.Launch
	return &l, c.Do(ctx, "GET", launchPath(id), nil, &l)
}

// Patch changes the fields req sets (nil ones are left as they are) and
// returns the launch as changed.
func (c *Client) Patch(ctx context.Context, id string, req api.PatchRequest) (*launch.Launch, error) {
	var l launch.Launch
	return &l, c.Do(ctx, "PATCH", launchPath(id), req, &l)
}

// Action runs pause, resume, promote (at the ramp's live steps, or 100% at
// once) or rollback with an optional reason, and returns the launch as
// changed.
func (c *Client) Action(ctx context.Context, id string, action launch.Action, reason string) (*launch.Launch, error) {
	var body any
	if reason != "" {
		body = api.ActionRequest{Reason: reason}
	}
	var l launch.Launch
	return &l, c.Do(ctx, "POST", launchPath(id, string(action)), body, &l)
}

// Promote makes the new version serve live traffic, stepped through
// req.LiveSteps when set (see api.PromoteRequest).
func (c *Client) Promote(ctx context.Context, id string, req api.PromoteRequest) (*launch.Launch, error) {
	var l launch.Launch
	return &l, c.Do(ctx, "POST", launchPath(id, string(launch.ActionPromote)), req, &l)
}
