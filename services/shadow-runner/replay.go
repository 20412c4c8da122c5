package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/darklaunch/darklaunch/pkg/h1"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/netpolicy"
)

// HeaderShadow marks every replayed request, so a shadow can tell mirrored
// traffic from real traffic (and, say, skip side effects).
const HeaderShadow = "X-Darklaunch-Shadow"

// JoinURL returns the URL a request for path?rawQuery is replayed to on a
// shadow (or secondary) at base. base may carry a base path ("http://h/v2"
// or "http://h/v2/"); the request path is appended to it with exactly one
// slash between them. path is taken in its wire (escaped) form, as a client
// sent it; a path that is not valid escaped text is taken as already
// decoded and escaped again. base's own query, if any, is replaced by
// rawQuery.
func JoinURL(base, path, rawQuery string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("replay URL %q: %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("replay URL %q is not an absolute http(s) URL", base)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	escaped := strings.TrimSuffix(u.EscapedPath(), "/") + path
	if decoded, err := url.PathUnescape(escaped); err == nil {
		u.Path, u.RawPath = decoded, escaped
	} else {
		u.Path, u.RawPath = strings.TrimSuffix(u.Path, "/")+path, ""
	}
	u.RawQuery = rawQuery
	u.ForceQuery = false
	u.Fragment, u.RawFragment = "", ""
	u.User = nil
	return u, nil
}

// shadowMark is HeaderShadow's value, shared by every replay (the
// transport only reads it).
var shadowMark = []string{"1"}

// ShadowHeaders returns the headers a replay sends: the captured request's
// end-to-end headers without Content-Length (recomputed from the body that
// is actually sent), Host (the shadow's own host is used) and Expect (the
// body is already in hand), plus the shadow marker. The values are shared
// with h (EndToEnd).
func ShadowHeaders(h http.Header) http.Header {
	out := envelope.EndToEnd(h, "Content-Length", "Host", "Expect", HeaderShadow)
	out[HeaderShadow] = shadowMark
	return out
}

// ClassifyError maps a replay's transport error to an Outcome.ErrorKind:
// blocked (the target policy refused the target), timeout (deadline passed, or a network timeout), refused (nothing listens),
// reset (the connection was reset or closed before the response was
// complete), or other.
func ClassifyError(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, netpolicy.ErrRefused):
		return envelope.ErrorBlocked
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return envelope.ErrorTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return envelope.ErrorRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return envelope.ErrorReset
	default:
		return envelope.ErrorOther
	}
}

// newClient returns the replay client: tuned keep-alive pooling, no proxy
// from the environment (replays go straight to the shadow), no transparent
// decompression (the shadow's body is recorded as sent, like the primary's)
// no redirect following (the comparison is of what the shadow answered, and
// a redirect must not lead a replay elsewhere), and the target policy
// applied to every address dialled, after name resolution
// (netpolicy.Control), so a name that resolves to a metadata address is
// refused however it got there.
func newClient(cfg *Config) (*http.Client, *http.Transport) {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second, Control: netpolicy.Control, Resolver: cfg.resolver}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		MaxConnsPerHost:       cfg.MaxConnsPerHost,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
	}
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return client, tr
}

// replay sends env's request to a target (the shadow or the secondary, at
// targetURL) and records what came back.
// A transport failure is part of the outcome, never an error: the pair is
// published either way, with status 0, the error, its kind and the time
// until the failure.
func (s *Service) replay(ctx context.Context, targetURL string, env *envelope.Envelope) envelope.Outcome {
	fail := func(err error, start time.Time) envelope.Outcome {
		out := envelope.Outcome{Error: envelope.ScrubError(err.Error()), ErrorKind: ClassifyError(err)}
		if !start.IsZero() {
			out.LatencyUS = time.Since(start).Microseconds()
		}
		return out
	}
	if err := s.cfg.targets.CheckURL(targetURL); err != nil {
		// Checked here too, not only by the reporter: this runner's
		// allow-list may be narrower, and a launch may predate it.
		return fail(err, time.Time{})
	}
	u, err := JoinURL(targetURL, env.Request.Path, env.Request.RawQuery)
	if err != nil {
		out := fail(err, time.Time{})
		out.ErrorKind = envelope.ErrorOther
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var body io.Reader = http.NoBody
	if len(env.Request.Body) > 0 {
		body = bytes.NewReader(env.Request.Body)
	}
	// The joined URL is used as it is (not printed and parsed again).
	req, err := http.NewRequestWithContext(ctx, env.Request.Method, "/", body)
	if err != nil {
		out := fail(err, time.Time{})
		out.ErrorKind = envelope.ErrorOther
		return out
	}
	req.URL, req.Host = u, u.Host
	req.Header = ShadowHeaders(env.Request.Headers)
	s.markReplay(req)

	start := time.Now()
	var resp *http.Response
	if p := s.direct.pool(u, req.Method); p != nil {
		resp, err = p.Do(req, &h1.Head{Method: req.Method, Path: u.EscapedPath(), RawQuery: u.RawQuery, ForceQuery: u.ForceQuery,
			Host: u.Host, Header: req.Header, Body: env.Request.Body}, nil)
	} else {
		resp, err = s.client.Do(req)
	}
	if err != nil {
		return fail(err, start)
	}
	defer resp.Body.Close()
	data, size, truncated, err := readBody(resp.Body, s.cfg.BodyLimit)
	if err != nil {
		// An incomplete answer is a failure like any other (status 0, as
		// docs/envelope.md promises readers), not a response to diff.
		return fail(err, start)
	}
	return envelope.Outcome{Response: envelope.Response{
		Status:        resp.StatusCode,
		Headers:       envelope.EndToEnd(resp.Header),
		Body:          data,
		BodySize:      size,
		BodyTruncated: truncated,
		LatencyUS:     time.Since(start).Microseconds(),
	}}
}

// copyBufs are the buffers bodies are read through: io.Copy would
// allocate 32 KiB per replay (a tenth of the runner's CPU went to
// allocating and clearing them).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readBody is envelope.ReadBody through a pooled copy buffer.
func readBody(r io.Reader, limit int) (body []byte, size int64, truncated bool, err error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	c := envelope.Capture{Limit: limit}
	_, err = io.CopyBuffer(&c, r, *buf)
	return c.Bytes(), c.Size(), c.Truncated(), err
}
