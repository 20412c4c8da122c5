package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

const testService = "svc"

// natsEnv is an embedded JetStream with the launch store and a core NATS
// subscription that sees every envelope the tap publishes.
type natsEnv struct {
	js    *testenv.JetStream
	nc    *nats.Conn
	store *launch.Store
	msgs  chan *nats.Msg
	// batched holds the envelopes of the last batch next read that it has
	// not returned yet, with their message.
	batched []*envelope.Envelope
	batchOf *nats.Msg
}

func newNATSEnv(t *testing.T) *natsEnv {
	t.Helper()
	srv := testenv.StartJetStream(t)
	nc, js := testenv.Connect(t, srv.URL())
	kv, err := launch.OpenBucket(testenv.Context(t), js)
	if err != nil {
		t.Fatal(err)
	}
	e := &natsEnv{js: srv, nc: nc, store: launch.NewStore(kv), msgs: make(chan *nats.Msg, 4096)}
	if _, err := nc.ChanSubscribe(stream.EnvelopesPrefix+">", e.msgs); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return e
}

// createLaunch stores an active launch for testService, then applies
// change (to pause it, say) when given.
func (e *natsEnv) createLaunch(t *testing.T, percent float64, methods []string, change func(*launch.Launch) error) *launch.Launch {
	t.Helper()
	return e.create(t, launch.Launch{Name: "test " + strconv.Itoa(rand.IntN(1e6)), SamplePercent: percent, Methods: methods}, change)
}

// create stores a launch of testService built from l (name and shadow URL
// filled in when empty), then applies change when given.
func (e *natsEnv) create(t *testing.T, l launch.Launch, change func(*launch.Launch) error) *launch.Launch {
	t.Helper()
	if l.Name == "" {
		l.Name = "routing test"
	}
	if l.ShadowURL == "" {
		l.ShadowURL = "http://shadow.invalid"
	}
	l.Service = testService
	ctx := testenv.Context(t)
	got, err := e.store.Create(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		if got, err = e.store.Update(ctx, got.ID, change); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// mirrorAll starts a tap with default settings in front of primaryURL and
// a launch sampling every request, and waits until the tap mirrors it.
func mirrorAll(t *testing.T, e *natsEnv, primaryURL string) (*Service, *launch.Launch) {
	t.Helper()
	s, _ := startMirror(t, e, primaryURL, nil)
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	return s, l
}

// next returns the next published envelope, with the message it came in
// (a batch or a single envelope, whose Nats-Msg-Id it checks), or fails
// after timeout.
func (e *natsEnv) next(t *testing.T, timeout time.Duration) (*envelope.Envelope, *nats.Msg) {
	t.Helper()
	if len(e.batched) > 0 {
		env := e.batched[0]
		e.batched = e.batched[1:]
		return env, e.batchOf
	}
	select {
	case m := <-e.msgs:
		envs := decodeMsg(t, m)
		e.batched, e.batchOf = envs[1:], m
		return envs[0], m
	case <-time.After(timeout):
		t.Fatalf("no envelope published within %s", timeout)
		return nil, nil
	}
}

// decodeMsg decodes a published message, a batch or a single envelope,
// and checks its Nats-Msg-Id.
func decodeMsg(t testing.TB, m *nats.Msg) []*envelope.Envelope {
	t.Helper()
	id := m.Header.Get(jetstream.MsgIDHeader)
	if m.Header.Get(envelope.BatchHeader) == "" {
		env, err := envelope.Decode(m.Data)
		if err != nil {
			t.Fatalf("published envelope does not decode: %v", err)
		}
		if id != env.ID {
			t.Fatalf("Nats-Msg-Id %q, envelope id %q", id, env.ID)
		}
		return []*envelope.Envelope{env}
	}
	if v := m.Header.Get(envelope.BatchHeader); v != envelope.BatchVersion {
		t.Fatalf("batch header %q", v)
	}
	envs, bad, err := envelope.DecodeEnvelopeBatch(m.Data)
	if err != nil || len(bad) > 0 || len(envs) == 0 {
		t.Fatalf("published batch does not decode: %v, %v (%d envelopes)", err, bad, len(envs))
	}
	ids := make([]string, len(envs))
	for i, env := range envs {
		ids[i] = env.ID
		if m.Subject != stream.EnvelopeSubject(env.LaunchID) {
			t.Fatalf("envelope of launch %s in a batch on %s", env.LaunchID, m.Subject)
		}
	}
	if want := envelope.BatchID(ids); id != want {
		t.Fatalf("batch Nats-Msg-Id %q, want BatchID %q", id, want)
	}
	return envs
}

// expectNone checks that nothing more was published, after a round trip
// that lets anything in flight arrive.
func (e *natsEnv) expectNone(t *testing.T) {
	t.Helper()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(e.batched) > 0 {
		t.Fatalf("unexpected envelopes published: %d more in the last batch", len(e.batched))
	}
	select {
	case m := <-e.msgs:
		t.Fatalf("unexpected envelope published on %s: %.200s", m.Subject, m.Data)
	default:
	}
}

func testLogger(t *testing.T) *slog.Logger { return testenv.Logger(t, slog.LevelWarn) }

// testKeyID is the id of the key startMirror's taps seal with.
const testKeyID = "test-key"

// startMirror runs a tap in front of primaryURL until the test ends, with
// a fresh seal key file (s.protection.keys opens what it seals); stop
// shuts it down early and checks that Run returned nil and every sampled
// envelope was accounted for. before runs on the service before Run starts.
func startMirror(t *testing.T, e *natsEnv, primaryURL string, mod func(*Config), before ...func(*Service)) (s *Service, stop func()) {
	t.Helper()
	cfg := Config{
		PrimaryURL: primaryURL,
		Addr:       "127.0.0.1:0",
		AdminAddr:  "127.0.0.1:0",
		Service:    testService,
		TapID:      "tap-test",
		NATS:       config.NATS{NATSURL: e.js.URL()},
	}
	cfg.SealKeyFile, _ = testenv.SealKeys(t, testKeyID)
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range before {
		f(s)
	}
	run := testenv.Run(t, s.Run)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		if err := run.Stop(); err != nil {
			t.Errorf("Run returned %v", err)
		}
		st := s.Stats()
		if st.Sampled != st.Published+st.DroppedTotal() {
			t.Errorf("envelopes not accounted for after shutdown: %+v", st)
		}
		if st.QueueDepth != 0 || st.PendingAcks != 0 {
			t.Errorf("queue or acks left after shutdown: %+v", st)
		}
	}
	t.Cleanup(stop)
	return s, stop
}

// waitMirrored waits until the tap's routing table mirrors exactly ids.
func waitMirrored(t *testing.T, s *Service, ids ...string) {
	t.Helper()
	slices.Sort(ids)
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		var got []string
		for _, l := range s.routes.Load().launches {
			got = append(got, l.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			return fmt.Errorf("tap mirrors %v, want %v", got, ids)
		}
		return nil
	})
}

// waitKnown waits until the tap's routing table knows a launch with this id.
func waitKnown(t *testing.T, s *Service, id string) {
	t.Helper()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s.Routing(id).Revision != 0 {
			return nil
		}
		return fmt.Errorf("tap has not seen launch %s", id)
	})
}

// largeBody is deterministic, incompressible-looking content.
func largeBody(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return b
}

const fixedDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// newPrimary is the service under the tap.
func newPrimary(t *testing.T, large []byte) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /small", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Date", fixedDate)
		h.Set("Content-Type", "application/json")
		h["X-Multi"] = []string{"a", "b"}
		h.Set("Set-Cookie", "session=1; Path=/")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, `{"path":%q,"query":%q}`, r.URL.Path, r.URL.RawQuery)
	})
	mux.HandleFunc("GET /large", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", fixedDate)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(large)))
		_, _ = w.Write(large)
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", fixedDate)
		w.Header().Set("Content-Type", "text/plain")
		for i := range 20 {
			fmt.Fprintf(w, "line %d %s\n", i, bytes.Repeat([]byte("x"), 1000))
			http.NewResponseController(w).Flush()
		}
	})
	mux.HandleFunc("GET /missing", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", fixedDate)
		http.Error(w, "no such thing", http.StatusNotFound)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Date", fixedDate)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /view", func(w http.ResponseWriter, r *http.Request) {
		// What the primary sees of the request.
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "host=%s\nquery=%s\nxff=%q\nxfh=%q\nforwarded=%q\nua=%q\n", r.Host, r.URL.RawQuery,
			r.Header.Values("X-Forwarded-For"), r.Header.Values("X-Forwarded-Host"), r.Header.Values("Forwarded"),
			r.Header.Values("User-Agent"))
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(make([]byte, 64<<10))
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI == "*" {
			fmt.Fprintf(w, "options uri=%s", r.RequestURI)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	srv.Config.DisableGeneralOptionsHandler = true
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// get fetches url with a fresh client and returns status, headers, body.
func get(t *testing.T, c *http.Client, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, c, req)
}

// send sends req with c and returns the response with its whole body.
func send(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

var errNotYet = errors.New("not yet")
