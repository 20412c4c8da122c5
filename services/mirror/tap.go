package mirror

import (
	"context"
	"errors"
	"io"
	"math/bits"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// maxLaunches is how many mirrored launches per service a request can be
// sampled for: the decision is a uint64 bit set so that it never allocates.
// Launches past the 64th of a service are not sampled.
const maxLaunches = 64

// ServeHTTP serves one request. The routing decision comes first and is
// cheap (see decide); only a sampled request pays for capturing.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.stats.proxied.Inc()
	replay := s.replay(r)
	s.distrustForwarding(r)
	rt := s.currentRoutes()
	lr, toNew, mask := rt.decide(r, s.stats, !replay)
	switch {
	case lr != nil:
		s.serveLive(w, r, rt, lr, toNew, mask)
	case mask == 0:
		if !s.forward(w, r, nil) {
			s.plain.ServeHTTP(w, r)
		}
	default:
		s.serveSampled(w, r, rt.launches, mask, s.plain, nil)
	}
}

// decide routes a request: lr is the live launch when the request is
// eligible for it, toNew whether its new version serves the request, and
// bit i of mask is set when rt.mirrored[i] samples it (never for a request
// the new version serves: its response is not the primary's). It costs an
// atomic load (by the caller), then per launch a method and path check and
// either a hash of the user's sticky key or a random number; it does not
// allocate.
func (rt *routes) decide(r *http.Request, c *metrics, sample bool) (lr *liveRoute, toNew bool, mask uint64) {
	var p string
	if rt.filters {
		p = filterPath(r)
	}
	if lr = rt.live; lr != nil {
		if !lr.eligible(p) {
			lr = nil
		} else if toNew = lr.toNew(r, c); toNew {
			return lr, true, 0
		}
	}
	if !sample {
		return lr, false, 0
	}
	return lr, false, rt.sample(r, p, c)
}

// serveLive serves a request eligible for the service's live launch: by the
// new version when its user falls within live_percent, otherwise by the
// primary, sampled for the mirrored launches as usual. Both sides are
// counted and timed, the primary's being the control group the new version
// is judged against.
func (s *Service) serveLive(w http.ResponseWriter, r *http.Request, rt *routes, lr *liveRoute, toNew bool, mask uint64) {
	arm := &lr.step.arms[armPrimary]
	if toNew {
		arm = &lr.step.arms[armNew]
	}
	arm.requests.Add(1)
	start := time.Now()
	switch {
	case toNew:
		lr.newProxy.ServeHTTP(w, r)
	case mask == 0:
		lr.primaryProxy.ServeHTTP(w, r)
	default:
		s.serveSampled(w, r, rt.launches, mask, lr.primaryProxy, arm)
	}
	// Not reached when the response was aborted (ReverseProxy panics with
	// http.ErrAbortHandler); an upgraded connection's life is no latency.
	if r.Header["Upgrade"] == nil {
		arm.observe(time.Since(start))
	}
}

// tapKey carries a sampled request's *tap through ReverseProxy to the
// ModifyResponse and ErrorHandler hooks.
type tapKey struct{}

// tap is the capture state of one sampled request. It is finished (turned
// into envelopes or counted as dropped) by whichever of its parts ends
// last: the handler, and the request body reader when there is a body (the
// transport may read the body on its own goroutine, even after the handler
// returned).
type tap struct {
	s        *Service
	launches []*launch.Launch
	mask     uint64
	// arm, when the request is a live launch's control group, counts the
	// primary's status class.
	arm   *versionStats
	start time.Time
	ctx   context.Context // the client's request context

	request       envelope.Request // method, path, query, host, headers
	contentLength int64
	hasBody       bool
	req           reqTee

	// Written on the handler goroutine only.
	status      int
	header      http.Header
	resp        respTee
	latency     time.Duration
	proxyErr    error
	unsupported bool
	reason      dropReason

	parts atomic.Int32
}

// serveSampled serves a request sampled for the launches in mask, capturing
// it; fallback serves what cannot be replayed.
func (s *Service) serveSampled(w http.ResponseWriter, r *http.Request, ls []*launch.Launch, mask uint64, fallback http.Handler, arm *versionStats) {
	path := r.URL.EscapedPath()
	// A protocol upgrade (WebSocket) cannot be replayed, nor can OPTIONS *.
	if r.Header["Upgrade"] != nil || !strings.HasPrefix(path, "/") {
		fallback.ServeHTTP(w, r)
		return
	}
	n := float64(bits.OnesCount64(mask))
	s.stats.sampled.Add(n)
	s.accountSampled(ls, mask)
	t := &tap{
		s:        s,
		launches: ls,
		mask:     mask,
		arm:      arm,
		start:    time.Now(),
		ctx:      r.Context(),
		request: envelope.Request{
			Method:   r.Method,
			Path:     path,
			RawQuery: r.URL.RawQuery,
			Host:     r.Host,
			// The client's map as it is: the direct path only reads it, and
			// net/http makes a new one per request. ReverseProxy gets a
			// clone below.
			Headers: r.Header,
		},
		contentLength: r.ContentLength,
	}
	t.parts.Store(1)
	// Deferred: the proxy aborts a response whose copy fails (client
	// gone) by panicking with http.ErrAbortHandler, and the tap must still
	// be accounted for.
	defer t.handlerDone()
	// Neither path sends a body when ContentLength is 0, so only a body one
	// will read is wrapped (and only then is there a reader part to wait for).
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		t.hasBody = true
		t.req = reqTee{rc: r.Body, t: t, cap: envelope.Capture{Limit: s.cfg.BodyLimit}}
		t.parts.Store(2)
		r.Body = &t.req
	}
	if s.forward(w, r, t) {
		// Sent and captured by the direct path.
		return
	}
	t.request.Headers = r.Header.Clone()
	r = r.WithContext(context.WithValue(r.Context(), tapKey{}, t))
	s.tapped.ServeHTTP(w, r)
}

// modifyResponse is the tapped proxy's hook: it records the primary's status
// and headers and tees the body into a capture as the proxy streams it.
func (s *Service) modifyResponse(res *http.Response) error {
	if t, ok := res.Request.Context().Value(tapKey{}).(*tap); ok {
		t.response(res, false)
	}
	return nil
}

// response records the primary's response (its hop-by-hop headers removed)
// and wraps its body in the capture. own: nothing but the tap uses the
// response's header map from now on (the direct path hands its values to
// the client's map, and net/http copies that map before it changes it), so
// it is kept without a copy.
func (t *tap) response(res *http.Response, own bool) {
	t.status = res.StatusCode
	if t.arm != nil {
		t.arm.status(res.StatusCode)
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy needs the raw body for the upgraded connection.
		t.unsupported = true
		return
	}
	t.header = res.Header
	if !own {
		t.header = res.Header.Clone()
	}
	body := res.Body
	if body == nil {
		body = http.NoBody
	}
	t.resp = respTee{rc: body, t: t, cap: envelope.Capture{Limit: t.s.cfg.BodyLimit}}
	res.Body = &t.resp
}

// tapErrorHandler records why a sampled request got no response, then
// answers as for any request.
func (s *Service) tapErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if t, ok := r.Context().Value(tapKey{}).(*tap); ok {
		t.failed(err)
	}
	s.errorHandler(w, r, err)
}

// failed records why the primary gave no response.
func (t *tap) failed(err error) {
	t.proxyErr = err
	if t.arm != nil && !errors.Is(err, context.Canceled) {
		t.arm.classes[classError].Add(1)
	}
}

// handlerDone runs when the handler returns or unwinds.
func (t *tap) handlerDone() {
	t.reason = t.outcome()
	if t.hasBody {
		t.req.seal()
	}
	t.release()
}

// outcome decides whether the exchange is complete enough to publish. A
// response whose body did not reach its end is never published: a half
// body would show up as a diff that is not there.
func (t *tap) outcome() dropReason {
	switch {
	case t.resp.eof:
		return reasonNone
	case t.unsupported:
		return dropUnsupported
	case t.ctx.Err() != nil:
		return dropClientAbort
	case t.proxyErr != nil && !errors.Is(t.proxyErr, context.Canceled):
		return dropPrimaryError
	case t.resp.err != nil && !errors.Is(t.resp.err, context.Canceled):
		return dropPrimaryError
	default:
		// The copy to the client failed while the primary was fine.
		return dropClientAbort
	}
}

func (t *tap) release() {
	if t.parts.Add(-1) == 0 {
		t.s.finish(t)
	}
}

// finish turns a tap into one envelope per sampled launch and queues them.
func (s *Service) finish(t *tap) {
	if t.reason != reasonNone {
		for mask := t.mask; mask != 0; mask &= mask - 1 {
			s.drop(t.launches[bits.TrailingZeros64(mask)].ID, t.reason, 1)
		}
		return
	}
	req := t.request
	if t.hasBody {
		c := &t.req.cap
		req.Body = c.Bytes()
		req.BodySize = c.Size()
		req.BodyTruncated = c.Truncated()
		if !t.req.eof && c.Size() != t.contentLength {
			// The primary answered without the proxy reading the whole
			// body: what was captured is a prefix of unknown length.
			req.BodyTruncated = true
			req.BodySize = t.contentLength // -1 when the length is unknown
		}
	}
	resp := envelope.Response{
		Status:        t.status,
		Headers:       t.header,
		Body:          t.resp.cap.Bytes(),
		BodySize:      t.resp.cap.Size(),
		BodyTruncated: t.resp.cap.Truncated(),
		LatencyUS:     t.latency.Microseconds(),
	}
	s.stats.latency.Observe(t.latency.Seconds())
	received := t.start.UTC()
	for mask := t.mask; mask != 0; mask &= mask - 1 {
		l := t.launches[bits.TrailingZeros64(mask)]
		// Envelopes of one request share the captured bodies and headers:
		// they are read-only from here on (the launch's capture policy and
		// the publisher's sealing change copies). The id is given by the
		// publisher.
		lreq := req
		lreq.Headers = l.Capture.Apply(req.Headers)
		s.enqueue(&envelope.Envelope{
			V:          envelope.Version,
			LaunchID:   l.ID,
			TapID:      s.cfg.TapID,
			ReceivedAt: received,
			Request:    lreq,
			Primary:    resp,
		}, req.Headers)
	}
}

// reqTee copies what the proxy reads of the request body into a capture.
// The transport reads it on its own goroutine and may still be reading
// when the handler returns, so the capture is sealed with a small lock-free
// state machine: once sealed, reads pass through uncaptured, and the part
// is released by whoever of seal and an in-flight Read ends last.
type reqTee struct {
	rc    io.ReadCloser
	t     *tap
	cap   envelope.Capture
	eof   bool
	state atomic.Uint32
}

const (
	teeReading uint32 = 1 << iota
	teeSealed
)

func (b *reqTee) Read(p []byte) (int, error) {
	for {
		st := b.state.Load()
		if st&teeSealed != 0 {
			return b.rc.Read(p)
		}
		if b.state.CompareAndSwap(st, st|teeReading) {
			break
		}
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		_, _ = b.cap.Write(p[:n])
	}
	if err == io.EOF {
		b.eof = true
	}
	for {
		st := b.state.Load()
		if b.state.CompareAndSwap(st, st&^teeReading) {
			if st&teeSealed != 0 {
				b.t.release()
			}
			return n, err
		}
	}
}

// Close seals the capture; the client's body itself belongs to the server.
func (b *reqTee) Close() error {
	b.seal()
	return nil
}

func (b *reqTee) seal() {
	for {
		st := b.state.Load()
		if st&teeSealed != 0 {
			return
		}
		if b.state.CompareAndSwap(st, st|teeSealed) {
			if st&teeReading == 0 {
				b.t.release()
			}
			return
		}
	}
}

// respTee copies the primary's response body into a capture as the proxy
// streams it to the client; it is only used on the handler goroutine.
type respTee struct {
	rc  io.ReadCloser
	t   *tap
	cap envelope.Capture
	eof bool
	err error
}

func (b *respTee) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		_, _ = b.cap.Write(p[:n])
	}
	if err == io.EOF {
		if !b.eof {
			b.eof = true
			b.t.latency = time.Since(b.t.start)
		}
	} else if err != nil && b.err == nil {
		b.err = err
	}
	return n, err
}

func (b *respTee) Close() error { return b.rc.Close() }
