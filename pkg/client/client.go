// Package client is a Go client of the reporter's HTTP API (docs/api.md),
// used by darkctl and the demo driver.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// APIError is an error answer of the API: its status and message.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// ErrNotFound matches (errors.Is) an APIError with status 404.
var ErrNotFound = errors.New("not found")

func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// Client calls one reporter.
type Client struct {
	base string
	http *http.Client
}

// New returns a client of the reporter at base (e.g. http://127.0.0.1:8090).
func New(base string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("reporter URL %q must be an absolute http(s) URL", base)
	}
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Do sends a JSON request and decodes a JSON answer into out (if not nil).
// A non-2xx answer is returned as *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Create creates a launch from its JSON fields (name, service, shadow_url,
// sample_percent, methods, ...).
func (c *Client) Create(ctx context.Context, fields map[string]any) (*launch.Launch, error) {
	var l launch.Launch
	return &l, c.Do(ctx, "POST", "/v1/launches", fields, &l)
}

// List returns every launch.
func (c *Client) List(ctx context.Context) ([]*launch.Launch, error) {
	var out struct {
		Launches []*launch.Launch `json:"launches"`
	}
	return out.Launches, c.Do(ctx, "GET", "/v1/launches", nil, &out)
}

// Get returns one launch.
func (c *Client) Get(ctx context.Context, id string) (*launch.Launch, error) {
	var l launch.Launch
	return &l, c.Do(ctx, "GET", "/v1/launches/"+url.PathEscape(id), nil, &l)
}

// Patch changes some fields of a launch.
func (c *Client) Patch(ctx context.Context, id string, fields map[string]any) (*launch.Launch, error) {
	var l launch.Launch
	return &l, c.Do(ctx, "PATCH", "/v1/launches/"+url.PathEscape(id), fields, &l)
}

// Action runs pause, resume, promote or rollback with an optional reason.
func (c *Client) Action(ctx context.Context, id, action, reason string) (*launch.Launch, error) {
	var body any
	if reason != "" {
		body = map[string]string{"reason": reason}
	}
	var l launch.Launch
	return &l, c.Do(ctx, "POST", "/v1/launches/"+url.PathEscape(id)+"/"+action, body, &l)
}

// Verdict is the answer of GET /v1/launches/{id}/verdict.
type Verdict struct {
	Verdict string   `json:"verdict"` // pass, fail or inconclusive
	Reasons []string `json:"reasons"`
	Checks  []Check  `json:"checks"`
}

// Check is one gate of a verdict.
type Check struct {
	Name      string  `json:"name"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	OK        bool    `json:"ok"`
}

// Verdict values.
const (
	Pass         = "pass"
	Fail         = "fail"
	Inconclusive = "inconclusive"
)

// Verdict returns a launch's current verdict.
func (c *Client) Verdict(ctx context.Context, id string) (*Verdict, error) {
	var v Verdict
	return &v, c.Do(ctx, "GET", "/v1/launches/"+url.PathEscape(id)+"/verdict", nil, &v)
}

// Report returns a launch's report.
func (c *Client) Report(ctx context.Context, id string) (*Report, error) {
	var r Report
	return &r, c.Do(ctx, "GET", "/v1/launches/"+url.PathEscape(id)+"/report", nil, &r)
}
