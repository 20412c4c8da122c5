package runner

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// harness is an embedded JetStream with the darklaunch streams and the
// launches bucket, and a client connection the test publishes and reads with.
type harness struct {
	t     *testing.T
	srv   *testenv.JetStream
	nc    *nats.Conn
	js    jetstream.JetStream
	store *launch.Store
	ctx   context.Context
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv := testenv.StartJetStream(t)
	nc, js := testenv.Connect(t, srv.URL())
	ctx := testenv.Context(t)
	kv, err := launch.OpenBucket(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, nc: nc, js: js, store: launch.NewStore(kv), ctx: ctx}
}

func (h *harness) createLaunch(shadowURL string) *launch.Launch {
	h.t.Helper()
	return h.createLaunchWithSecondary(shadowURL, "")
}

func (h *harness) createLaunchWithSecondary(shadowURL, secondaryURL string) *launch.Launch {
	h.t.Helper()
	l, err := h.store.Create(h.ctx, launch.Launch{
		Name: "test", ShadowURL: shadowURL, SecondaryURL: secondaryURL, SamplePercent: 100,
		Methods: []string{"GET", "POST", "PUT", "DELETE"},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

func (h *harness) setStatus(id string, st launch.Status) {
	h.t.Helper()
	if _, err := h.store.Update(h.ctx, id, func(l *launch.Launch) error { l.Status = st; return nil }); err != nil {
		h.t.Fatal(err)
	}
}

// testConfig is a runner configured for tests: the harness's server, a
// loopback admin port, short timeouts.
func (h *harness) testConfig(id string) Config {
	cfg := DefaultConfig()
	cfg.NATSURL = h.srv.URL()
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.Timeout = 5 * time.Second
	cfg.Concurrency = 8
	cfg.ID = id
	return cfg
}

// runner is a Service running until Stop (or the end of the test).
type runner struct {
	*Service
	*testenv.Running
}

// startRunner starts a Service without waiting for it to be ready.
func (h *harness) startRunner(cfg Config) *runner {
	h.t.Helper()
	svc, err := New(cfg, testLogger(h.t))
	if err != nil {
		h.t.Fatal(err)
	}
	return &runner{Service: svc, Running: testenv.Run(h.t, svc.Run)}
}

// startWithShadow starts a healthy shadow, a launch sampling everything to
// it and a ready runner with the given id and test settings.
func (h *harness) startWithShadow(id string) (*shadow, *launch.Launch, *runner) {
	h.t.Helper()
	sh := newShadow(h.t, nil)
	return sh, h.createLaunch(sh.URL), h.runReady(h.testConfig(id))
}

// runReady starts a Service and waits until it is pulling envelopes.
func (h *harness) runReady(cfg Config) *runner {
	h.t.Helper()
	r := h.startRunner(cfg)
	select {
	case <-r.Ready():
	case <-time.After(15 * time.Second):
		h.t.Fatalf("runner %s not ready within 15s", cfg.ID)
	}
	return r
}

func newEnvelope(launchID, method, path, query string, body []byte) *envelope.Envelope {
	return &envelope.Envelope{
		V: envelope.Version, ID: envelope.NewID(), LaunchID: launchID, TapID: "test-tap",
		ReceivedAt: time.Now().UTC(),
		Request: envelope.Request{
			Method: method, Path: path, RawQuery: query, Host: "primary.example",
			Headers: http.Header{"Accept": {"application/json"}}, Body: body, BodySize: int64(len(body)),
		},
		Primary: envelope.Response{Status: 200, Body: []byte(`{"ok":true}`), BodySize: 11, LatencyUS: 1000},
	}
}

func (h *harness) publishEnvelope(e *envelope.Envelope) {
	h.t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishRaw(stream.EnvelopeSubject(e.LaunchID), data, e.ID)
}

// publishBatch publishes envelopes as one envelope batch.
func (h *harness) publishBatch(subject string, envs ...*envelope.Envelope) {
	h.t.Helper()
	publishEnvelopeBatch(h.t, h.js, subject, envs...)
}

func publishEnvelopeBatch(t testing.TB, js jetstream.JetStream, subject string, envs ...*envelope.Envelope) {
	t.Helper()
	data, err := envelope.AppendEnvelopeBatch(nil, envs)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(envs))
	for i, e := range envs {
		ids[i] = e.ID
	}
	m := nats.NewMsg(subject)
	m.Header.Set(envelope.BatchHeader, envelope.BatchVersion)
	m.Data = data
	if _, err := js.PublishMsg(testenv.Context(t), m, jetstream.WithMsgID(envelope.BatchID(ids))); err != nil {
		t.Fatalf("publish batch to %s: %v", subject, err)
	}
}

func (h *harness) publishRaw(subject string, data []byte, id string) {
	h.t.Helper()
	var opts []jetstream.PublishOpt
	if id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	if _, err := h.js.Publish(h.ctx, subject, data, opts...); err != nil {
		h.t.Fatalf("publish to %s: %v", subject, err)
	}
}

func (h *harness) streamMsgs(name string) (uint64, error) {
	return testenv.StreamMsgs(h.ctx, h.js, name)
}

// waitStreamMsgs polls until the stream holds exactly n messages.
func (h *harness) waitStreamMsgs(name string, n uint64) {
	h.t.Helper()
	testenv.WaitStreamMsgs(h.t, h.js, name, n)
}

// rawMsgs reads every message a stream holds, without consuming them.
func (h *harness) rawMsgs(name string) []*jetstream.RawStreamMsg {
	h.t.Helper()
	s, err := h.js.Stream(h.ctx, name)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(h.ctx, seq)
		if err != nil {
			continue // removed (acked) or never stored
		}
		out = append(out, m)
	}
	return out
}

// pairs decodes every pair in the pairs stream, the items of pair batches
// included; a single pair must carry its envelope id as Nats-Msg-Id, a
// batch the BatchID of its envelope ids.
func (h *harness) pairs() []*envelope.Pair {
	h.t.Helper()
	var out []*envelope.Pair
	for _, m := range h.rawMsgs(stream.PairsStream) {
		if m.Header.Get(envelope.BatchHeader) != "" {
			ps, bad, err := envelope.DecodePairBatch(m.Data)
			if err != nil || len(bad) > 0 {
				h.t.Fatalf("pair batch at seq %d: %v %v", m.Sequence, err, bad)
			}
			ids := make([]string, len(ps))
			for i, p := range ps {
				ids[i] = p.Envelope.ID
				if m.Subject != stream.PairSubject(p.Envelope.LaunchID) {
					h.t.Errorf("pair %s on subject %s", p.Envelope.ID, m.Subject)
				}
			}
			if got := m.Header.Get(jetstream.MsgIDHeader); got != envelope.BatchID(ids) {
				h.t.Errorf("pair batch at seq %d has Nats-Msg-Id %q", m.Sequence, got)
			}
			out = append(out, ps...)
			continue
		}
		p, err := envelope.DecodePair(m.Data)
		if err != nil {
			h.t.Fatalf("pair at seq %d: %v", m.Sequence, err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != p.Envelope.ID {
			h.t.Errorf("pair %s has Nats-Msg-Id %q", p.Envelope.ID, got)
		}
		if m.Subject != stream.PairSubject(p.Envelope.LaunchID) {
			h.t.Errorf("pair %s on subject %s", p.Envelope.ID, m.Subject)
		}
		out = append(out, p)
	}
	return out
}

// seenRequest is what a test shadow received.
type seenRequest struct {
	Method, Path, Query, Host string
	Header                    http.Header
	Body                      []byte
	ContentLength             int64
}

// shadow is an httptest server recording every request it gets and
// answering with handler (or 200 "shadow" when nil).
type shadow struct {
	*httptest.Server
	mu      sync.Mutex
	seen    []seenRequest
	current atomic.Int64
	max     atomic.Int64
}

func newShadow(t *testing.T, handler http.HandlerFunc) *shadow {
	t.Helper()
	s := &shadow{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.current.Add(1)
		defer s.current.Add(-1)
		for {
			m := s.max.Load()
			if n <= m || s.max.CompareAndSwap(m, n) {
				break
			}
		}
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.seen = append(s.seen, seenRequest{
			Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Host: r.Host,
			Header: r.Header.Clone(), Body: body, ContentLength: r.ContentLength,
		})
		s.mu.Unlock()
		if handler != nil {
			handler(w, r)
			return
		}
		_, _ = io.WriteString(w, "shadow")
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *shadow) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.seen...)
}

// testLogger logs to the test at warn level.
func testLogger(t *testing.T) *slog.Logger { return testenv.Logger(t, slog.LevelWarn) }
