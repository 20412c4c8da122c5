package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go/jetstream"
)

func TestReplayPublishesOnePair(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // a latency that cannot round to 0 µs
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Shadow-Version", "2")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":42,"total":12.5}`)
	})
	l := h.createLaunch(sh.URL + "/base/")
	r := h.runReady(h.testConfig("runner-a"))

	e := newEnvelope(l.ID, "POST", "/api/orders/42", "expand=items&x=%2F", []byte(`{"qty":3}`))
	e.Request.Headers = map[string][]string{
		"Accept":            {"application/json"},
		"X-User-Id":         {"7"},
		"Connection":        {"keep-alive, X-Hop"},
		"X-Hop":             {"secret"},
		"Keep-Alive":        {"timeout=5"},
		"Proxy-Connection":  {"keep-alive"},
		"Te":                {"trailers"},
		"Transfer-Encoding": {"chunked"},
		"Upgrade":           {"websocket"},
		"Content-Length":    {"999"},
		"Host":              {"primary.example"},
	}
	h.publishEnvelope(e)

	// Acked: the work-queue stream empties, and exactly one pair is stored.
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	h.waitStreamMsgs(stream.PairsStream, 1)

	reqs := sh.requests()
	if len(reqs) != 1 {
		t.Fatalf("shadow got %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	if got.Method != "POST" || got.Path != "/base/api/orders/42" || got.Query != "expand=items&x=%2F" {
		t.Errorf("shadow got %s %s?%s, want POST /base/api/orders/42?expand=items&x=%%2F", got.Method, got.Path, got.Query)
	}
	if string(got.Body) != `{"qty":3}` || got.ContentLength != 9 {
		t.Errorf("shadow got body %q with Content-Length %d", got.Body, got.ContentLength)
	}
	if v := got.Header.Get(HeaderShadow); v != "1" {
		t.Errorf("shadow got %s %q, want 1", HeaderShadow, v)
	}
	if got.Header.Get("X-User-Id") != "7" || got.Header.Get("Accept") != "application/json" {
		t.Errorf("end-to-end headers not replayed: %v", got.Header)
	}
	for _, hop := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade", "Transfer-Encoding"} {
		if v, ok := got.Header[hop]; ok {
			t.Errorf("hop-by-hop header %s reached the shadow: %q", hop, v)
		}
	}
	if shadowHost := strings.TrimPrefix(sh.URL, "http://"); got.Host != shadowHost {
		t.Errorf("shadow got Host %q, want its own host %q", got.Host, shadowHost)
	}

	ps := h.pairs()
	if len(ps) != 1 {
		t.Fatalf("%d pairs, want 1", len(ps))
	}
	p := ps[0]
	if p.V != envelope.Version || p.Envelope.ID != e.ID || p.RunnerID != "runner-a" || p.ReplayedAt.IsZero() {
		t.Errorf("pair header fields: v=%d id=%s runner=%q replayed_at=%v", p.V, p.Envelope.ID, p.RunnerID, p.ReplayedAt)
	}
	if p.Envelope.Request.Headers.Get("X-Hop") != "secret" {
		t.Errorf("the envelope must travel unchanged in the pair")
	}
	sh2 := p.Shadow
	if sh2.Error != "" || sh2.ErrorKind != "" {
		t.Errorf("shadow outcome has error %q (%s)", sh2.Error, sh2.ErrorKind)
	}
	if sh2.Status != http.StatusCreated || string(sh2.Body) != `{"id":42,"total":12.5}` || sh2.BodySize != 22 || sh2.BodyTruncated {
		t.Errorf("shadow outcome: status %d body %q size %d truncated %v", sh2.Status, sh2.Body, sh2.BodySize, sh2.BodyTruncated)
	}
	if sh2.Headers.Get("X-Shadow-Version") != "2" || sh2.Headers.Get("Content-Type") != "application/json" {
		t.Errorf("shadow headers not recorded: %v", sh2.Headers)
	}
	if sh2.LatencyUS < 2000 || sh2.LatencyUS > 5_000_000 {
		t.Errorf("shadow latency %d µs, want at least the handler's 2 ms", sh2.LatencyUS)
	}
	if p.Secondary != nil {
		t.Errorf("secondary must be nil, got %+v", p.Secondary)
	}

	st := r.Stats()
	if st.Received != 1 || st.Replayed != 1 || st.PairsPublished != 1 || st.InFlight != 0 || st.DeadLettered != 0 || st.Skipped != 0 {
		t.Errorf("stats: %+v", st)
	}

	// Health and metrics on the admin address.
	if code, rep := testenv.Health(t, r.AdminAddr()); code != http.StatusOK {
		t.Errorf("healthz %d %+v, want 200", code, rep)
	}
	testenv.WantMetrics(t, r.AdminAddr(),
		"darklaunch_shadow_runner_pairs_published_total 1",
		"darklaunch_shadow_runner_envelopes_received_total 1",
		"darklaunch_shadow_runner_replays_total 1",
		"darklaunch_shadow_runner_replay_latency_seconds_count 1",
		"darklaunch_shadow_runner_in_flight 0",
		`darklaunch_shadow_runner_shadow_failures_total{kind="timeout"} 0`,
	)
}

func TestBodiesAndTruncation(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 100))
	})
	l := h.createLaunch(sh.URL)
	cfg := h.testConfig("runner-trunc")
	cfg.BodyLimit = 10
	h.runReady(cfg)

	// The tap kept 4 of 50 request bytes: the runner replays the 4 it has.
	e := newEnvelope(l.ID, "PUT", "/doc", "", []byte("abcd"))
	e.Request.BodySize = 50
	e.Request.BodyTruncated = true
	h.publishEnvelope(e)
	h.waitStreamMsgs(stream.PairsStream, 1)

	if reqs := sh.requests(); len(reqs) != 1 || string(reqs[0].Body) != "abcd" || reqs[0].ContentLength != 4 {
		t.Fatalf("shadow requests: %+v", reqs)
	}
	p := h.pairs()[0]
	if !p.Envelope.Request.BodyTruncated {
		t.Errorf("pair lost the request's body_truncated flag")
	}
	if string(p.Shadow.Body) != "xxxxxxxxxx" || p.Shadow.BodySize != 100 || !p.Shadow.BodyTruncated {
		t.Errorf("shadow body %q size %d truncated %v, want 10 bytes of 100, truncated", p.Shadow.Body, p.Shadow.BodySize, p.Shadow.BodyTruncated)
	}
}

func TestShadowFailures(t *testing.T) {
	h := newHarness(t)

	refused := "http://127.0.0.1:" + fmt.Sprint(testenv.FreePort(t))
	slow := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	hangup := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	shortBody := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		_ = buf.Flush()
		conn.Close()
	})
	redirect := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})

	cases := []struct {
		name, url, kind string
		status          int
	}{
		{"refused", refused, envelope.ErrorRefused, 0},
		{"timeout", slow.URL, envelope.ErrorTimeout, 0},
		{"hangup before response", hangup.URL, envelope.ErrorReset, 0},
		{"hangup mid-body", shortBody.URL, envelope.ErrorReset, 0},
		{"redirect not followed", redirect.URL, "", http.StatusFound},
	}
	byLaunch := map[string]int{}
	for i, c := range cases {
		byLaunch[h.createLaunch(c.url).ID] = i
	}
	cfg := h.testConfig("runner-fail")
	cfg.Timeout = 300 * time.Millisecond
	r := h.runReady(cfg)
	for id := range byLaunch {
		h.publishEnvelope(newEnvelope(id, "GET", "/thing", "", nil))
	}
	h.waitStreamMsgs(stream.PairsStream, uint64(len(cases)))
	h.waitStreamMsgs(stream.EnvelopesStream, 0)

	for _, p := range h.pairs() {
		c := cases[byLaunch[p.Envelope.LaunchID]]
		t.Run(c.name, func(t *testing.T) {
			if p.Shadow.ErrorKind != c.kind || p.Shadow.Status != c.status {
				t.Errorf("kind %q status %d (error %q), want kind %q status %d", p.Shadow.ErrorKind, p.Shadow.Status, p.Shadow.Error, c.kind, c.status)
			}
			if (c.kind != "") != (p.Shadow.Error != "") {
				t.Errorf("error %q with kind %q", p.Shadow.Error, c.kind)
			}
		})
	}
	if n := len(redirect.requests()); n != 1 {
		t.Errorf("redirecting shadow got %d requests, want 1 (redirects are not followed)", n)
	}
	st := r.Stats()
	want := map[string]int64{envelope.ErrorRefused: 1, envelope.ErrorTimeout: 1, envelope.ErrorReset: 2, envelope.ErrorOther: 0}
	for k, v := range want {
		if st.ShadowFailures[k] != v {
			t.Errorf("ShadowFailures[%s] = %d, want %d (all: %v)", k, st.ShadowFailures[k], v, st.ShadowFailures)
		}
	}
	if st.PairsPublished != int64(len(cases)) {
		t.Errorf("PairsPublished %d, want %d", st.PairsPublished, len(cases))
	}
}

func TestDeadLetters(t *testing.T) {
	h := newHarness(t)
	sh, l, r := h.startWithShadow("runner-dl")

	future := newEnvelope(l.ID, "GET", "/", "", nil)
	future.V = envelope.Version + 1
	futureJSON, _ := json.Marshal(future)
	unknown := newEnvelope(envelope.NewID(), "GET", "/", "", nil)
	unknownJSON, _ := json.Marshal(unknown)

	sent := map[string]string{ // data -> reason fragment
		"this is not json":  "not valid JSON",
		string(futureJSON):  "version",
		string(unknownJSON): "unknown launch",
	}
	h.publishRaw(stream.EnvelopeSubject(l.ID), []byte("this is not json"), "")
	h.publishRaw(stream.EnvelopeSubject(l.ID), futureJSON, future.ID)
	h.publishRaw(stream.EnvelopeSubject(unknown.LaunchID), unknownJSON, unknown.ID)

	h.waitStreamMsgs(stream.DeadLetterStream, 3)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	for _, m := range h.rawMsgs(stream.DeadLetterStream) {
		want, ok := sent[string(m.Data)]
		if !ok {
			t.Errorf("dead letter with unexpected data %q", m.Data)
			continue
		}
		delete(sent, string(m.Data))
		if m.Subject != stream.DeadLetterSubject(Stage) {
			t.Errorf("dead letter on %s", m.Subject)
		}
		if reason := m.Header.Get(stream.HeaderReason); !strings.Contains(reason, want) {
			t.Errorf("reason %q, want it to mention %q", reason, want)
		}
		if orig := m.Header.Get(stream.HeaderSubject); !strings.HasPrefix(orig, stream.EnvelopesPrefix) {
			t.Errorf("original subject %q", orig)
		}
	}
	if len(sent) != 0 {
		t.Errorf("not dead-lettered: %v", sent)
	}
	if n, _ := h.streamMsgs(stream.PairsStream); n != 0 {
		t.Errorf("%d pairs for bad envelopes", n)
	}
	if len(sh.requests()) != 0 {
		t.Errorf("a bad envelope reached the shadow")
	}
	if st := r.Stats(); st.DeadLettered != 3 || st.Received != 3 || st.Replayed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestFinishedLaunchesAreSkipped(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, nil)
	rolled := h.createLaunch(sh.URL)
	h.setStatus(rolled.ID, launch.StatusRolledBack)
	promoted := h.createLaunch(sh.URL)
	h.setStatus(promoted.ID, launch.StatusPromoted)
	paused := h.createLaunch(sh.URL)
	h.setStatus(paused.ID, launch.StatusPaused)
	later := h.createLaunch(sh.URL) // rolled back while the runner runs
	r := h.runReady(h.testConfig("runner-skip"))

	h.publishEnvelope(newEnvelope(rolled.ID, "GET", "/rolled", "", nil))
	h.publishEnvelope(newEnvelope(promoted.ID, "GET", "/promoted", "", nil))
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s := r.Stats().Skipped; s != 2 {
			return fmt.Errorf("skipped %d, want 2", s)
		}
		return nil
	})

	// A launch rolled back after start: once the runner's watch has seen it,
	// its envelopes are skipped too.
	h.setStatus(later.ID, launch.StatusRolledBack)
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if l := r.watcher.Snapshot().ByID[later.ID]; l == nil || l.Status != launch.StatusRolledBack {
			return errors.New("runner has not seen the rollback yet")
		}
		return nil
	})
	h.publishEnvelope(newEnvelope(later.ID, "GET", "/later", "", nil))
	// Paused launches still get their queued envelopes replayed.
	h.publishEnvelope(newEnvelope(paused.ID, "GET", "/paused", "", nil))
	h.waitStreamMsgs(stream.PairsStream, 1)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)

	reqs := sh.requests()
	if len(reqs) != 1 || reqs[0].Path != "/paused" {
		t.Errorf("shadow requests %+v, want only /paused", reqs)
	}
	if p := h.pairs(); len(p) != 1 || p[0].Envelope.LaunchID != paused.ID {
		t.Errorf("pairs %+v, want one for the paused launch", p)
	}
	if st := r.Stats(); st.Skipped != 3 || st.Replayed != 1 || st.Received != 4 {
		t.Errorf("stats %+v, want 3 skipped, 1 replayed", st)
	}
}

func TestRunnersShareTheConsumer(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		_, _ = io.WriteString(w, r.URL.Path)
	})
	l := h.createLaunch(sh.URL)
	runners := make([]*runner, 2)
	for i := range runners {
		cfg := h.testConfig(fmt.Sprintf("runner-%d", i))
		cfg.Concurrency = 4
		cfg.FetchBatch = 4
		runners[i] = h.runReady(cfg)
	}

	const n = 200
	ids := map[string]bool{}
	for i := range n {
		e := newEnvelope(l.ID, "GET", fmt.Sprintf("/item/%d", i), "", nil)
		ids[e.ID] = true
		h.publishEnvelope(e)
	}
	h.waitStreamMsgs(stream.PairsStream, n)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)

	perID := map[string]int{}
	perRunner := map[string]int{}
	for _, p := range h.pairs() {
		perID[p.Envelope.ID]++
		perRunner[p.RunnerID]++
		if p.Shadow.Status != 200 || string(p.Shadow.Body) != p.Envelope.Request.Path {
			t.Errorf("pair %s: shadow answered %d %q for %s", p.Envelope.ID, p.Shadow.Status, p.Shadow.Body, p.Envelope.Request.Path)
		}
	}
	for id := range ids {
		if perID[id] != 1 {
			t.Errorf("envelope %s has %d pairs, want 1", id, perID[id])
		}
	}
	if len(perID) != n {
		t.Errorf("%d distinct envelopes in pairs, want %d", len(perID), n)
	}
	perPath := map[string]int{}
	for _, r := range sh.requests() {
		perPath[r.Path]++
	}
	for i := range n {
		if c := perPath[fmt.Sprintf("/item/%d", i)]; c != 1 {
			t.Errorf("/item/%d replayed %d times, want 1", i, c)
		}
	}
	var total int64
	for _, r := range runners {
		st := r.Stats()
		total += st.PairsPublished
		if st.PairsPublished == 0 {
			t.Errorf("runner %s did no work (per runner: %v)", r.ID(), perRunner)
		}
	}
	if total != n {
		t.Errorf("runners published %d pairs together, want %d", total, n)
	}
	t.Logf("pairs per runner: %v", perRunner)
}

func TestConcurrencyIsBounded(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	sh := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	l := h.createLaunch(sh.URL)
	cfg := h.testConfig("runner-bound")
	cfg.Concurrency = 4
	cfg.FetchBatch = 2
	cfg.Timeout = 30 * time.Second
	r := h.runReady(cfg)

	const n = 20
	for i := range n {
		h.publishEnvelope(newEnvelope(l.ID, "GET", fmt.Sprintf("/block/%d", i), "", nil))
	}
	testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if c := sh.current.Load(); c != 4 {
			return fmt.Errorf("%d requests at the shadow, want 4", c)
		}
		return nil
	})
	// With every slot taken the runner holds exactly 4 deliveries, and
	// buffers at most FetchBatch more: it pulls no envelopes beyond those.
	cons, err := h.js.Consumer(h.ctx, stream.EnvelopesStream, stream.RunnerConsumer)
	if err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		info, err := cons.Info(h.ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending < 4 || info.NumAckPending > 4+2 || info.NumPending != uint64(n-info.NumAckPending) {
			return fmt.Errorf("ack pending %d, pending %d; want 4 to 6, and the rest pending", info.NumAckPending, info.NumPending)
		}
		return nil
	})
	if st := r.Stats(); st.InFlight != 4 {
		t.Errorf("in flight %d, want 4", st.InFlight)
	}
	close(release)
	h.waitStreamMsgs(stream.PairsStream, n)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	if m := sh.max.Load(); m != 4 {
		t.Errorf("at most %d concurrent requests at the shadow, want exactly 4", m)
	}
	if info, err := cons.Info(h.ctx); err != nil || info.Config.MaxAckPending != 32 || info.Config.AckWait != cfg.AckWait {
		t.Errorf("consumer config %+v (err %v): want MaxAckPending 8x4 and AckWait RUNNER_ACK_WAIT", info.Config, err)
	}
}

func TestShutdownFinishesInFlightReplays(t *testing.T) {
	h := newHarness(t)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	sh := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "late but complete")
	})
	l := h.createLaunch(sh.URL)
	r := h.runReady(h.testConfig("runner-stop"))
	h.publishEnvelope(newEnvelope(l.ID, "GET", "/slow", "", nil))
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("replay never reached the shadow")
	}
	r.Cancel() // shutdown begins while the replay is in flight
	close(release)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	h.waitStreamMsgs(stream.PairsStream, 1)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	if p := h.pairs()[0]; string(p.Shadow.Body) != "late but complete" {
		t.Errorf("pair body %q", p.Shadow.Body)
	}
	// A fresh process picks up where this one stopped (durable consumer).
	r2 := h.runReady(h.testConfig("runner-stop-2"))
	h.publishEnvelope(newEnvelope(l.ID, "GET", "/next", "", nil))
	<-entered
	h.waitStreamMsgs(stream.PairsStream, 2)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	if st := r2.Stats(); st.PairsPublished != 1 {
		t.Errorf("second runner stats %+v", st)
	}
}

func TestPairPublishFailureKeepsTheEnvelope(t *testing.T) {
	h := newHarness(t)
	sh, l, r := h.startWithShadow("runner-pubfail")

	// Without the pairs stream a pair cannot be stored anywhere.
	if err := h.js.DeleteStream(h.ctx, stream.PairsStream); err != nil {
		t.Fatal(err)
	}
	h.publishEnvelope(newEnvelope(l.ID, "GET", "/kept", "", nil))
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := r.Stats(); st.PublishFailures < 1 || st.Naks < 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if n, err := h.streamMsgs(stream.EnvelopesStream); err != nil || n != 1 {
		t.Fatalf("envelopes stream holds %d (err %v); the envelope must not be acked", n, err)
	}
	if err := stream.Ensure(h.ctx, h.js); err != nil {
		t.Fatal(err)
	}
	h.waitStreamMsgs(stream.PairsStream, 1)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	if got := len(sh.requests()); got < 2 {
		t.Errorf("shadow got %d requests; the retry replays again", got)
	}
}

func TestStartsBeforeNATS(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, nil)
	l := h.createLaunch(sh.URL)
	h.srv.Stop()

	r := h.startRunner(h.testConfig("runner-early"))
	health := func() int {
		code, _ := testenv.Health(t, r.AdminAddr())
		return code
	}
	if c := health(); c != http.StatusServiceUnavailable {
		t.Errorf("healthz %d while NATS is down, want 503", c)
	}
	h.srv.Start()
	select {
	case <-r.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("runner did not get ready after NATS came up")
	}
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if c := health(); c != http.StatusOK {
			return fmt.Errorf("healthz %d", c)
		}
		return nil
	})
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !h.nc.IsConnected() {
			return errors.New("test client not reconnected")
		}
		return nil
	})
	h.publishEnvelope(newEnvelope(l.ID, "GET", "/after", "", nil))
	h.waitStreamMsgs(stream.PairsStream, 1)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
}

func TestNewValidatesAndBinds(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Concurrency = 0 },
		func(c *Config) { c.Timeout = 0 },
		func(c *Config) { c.FetchBatch = 0 },
		func(c *Config) { c.BodyLimit = -1 },
		func(c *Config) { c.MaxDeliver = 0 },
		func(c *Config) { c.HeartbeatInterval = -time.Second },
		func(c *Config) { c.HeartbeatTTL = 9 * time.Second }, // under 2 x the 5s interval
	} {
		cfg := DefaultConfig()
		cfg.AdminAddr = "127.0.0.1:0"
		mod(&cfg)
		// Validate is what config.Load runs on the environment's settings;
		// New gives a zero field of a Config built in Go its default first.
		if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrConfig", cfg, err)
		}
		if cfg.Concurrency == 0 {
			cfg.Concurrency = -1
		}
		if cfg.Timeout == 0 {
			cfg.Timeout = -1
		}
		if cfg.FetchBatch == 0 {
			cfg.FetchBatch = -1
		}
		if cfg.MaxDeliver == 0 {
			cfg.MaxDeliver = -1
		}
		if _, err := New(cfg, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	cfg := DefaultConfig()
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.NATSURL = "nats://127.0.0.1:1" // nothing there: New must not care
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.admin.Close()
	if u, err := url.Parse("http://" + s.AdminAddr()); err != nil || u.Port() == "0" {
		t.Errorf("AdminAddr %q is not the bound address", s.AdminAddr())
	}
	if s.ID() == "" || !strings.Contains(s.ID(), "-") {
		t.Errorf("default runner id %q, want hostname-pid", s.ID())
	}

	// A Config built by hand gets the documented heartbeat defaults.
	hand := Config{NATS: cfg.NATS, AdminAddr: "127.0.0.1:0", Concurrency: 1, Timeout: time.Second, FetchBatch: 1, MaxDeliver: 1}
	if err := hand.normalize(); err != nil || hand.HeartbeatInterval != 5*time.Second || hand.HeartbeatTTL != 15*time.Second {
		t.Errorf("zero heartbeat settings: %v, interval %s, ttl %s; want 5s, 15s", err, hand.HeartbeatInterval, hand.HeartbeatTTL)
	}
}

func TestConsumerConfig(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.normalize(); err != nil {
		t.Fatal(err)
	}
	s := &Service{cfg: cfg}
	cc := s.consumerConfig()
	if cc.Durable != stream.RunnerConsumer || cc.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("consumer %+v", cc)
	}
	// A crashed runner's envelopes come back within 5s (issue 11): the
	// deadline no longer covers a replay, which is kept alive instead.
	if cc.AckWait > 5*time.Second || cc.MaxAckPending != 8*cfg.Concurrency || cc.MaxDeliver != 20 {
		t.Errorf("ack wait %s, max ack pending %d, max deliver %d", cc.AckWait, cc.MaxAckPending, cc.MaxDeliver)
	}
}

func TestReadyWithNoLaunches(t *testing.T) {
	h := newHarness(t)
	r := h.runReady(h.testConfig("runner-empty")) // fails unless Ready closes
	if n := len(r.watcher.Snapshot().ByID); n != 0 {
		t.Errorf("%d launches in an empty bucket", n)
	}
	// A launch created after start is found (by the watch or the KV fallback).
	sh := newShadow(t, nil)
	l := h.createLaunch(sh.URL)
	h.publishEnvelope(newEnvelope(l.ID, "GET", "/new", "", nil))
	h.waitStreamMsgs(stream.PairsStream, 1)
	if st := r.Stats(); st.DeadLettered != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestGivesUpToDeadLetterAfterMaxDeliver(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, nil)
	l := h.createLaunch(sh.URL)
	cfg := h.testConfig("runner-maxdeliver")
	cfg.MaxDeliver = 2
	r := h.runReady(cfg)
	if err := h.js.DeleteStream(h.ctx, stream.PairsStream); err != nil {
		t.Fatal(err)
	}
	e := newEnvelope(l.ID, "GET", "/doomed", "", nil)
	h.publishEnvelope(e)
	h.waitStreamMsgs(stream.DeadLetterStream, 1)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	m := h.rawMsgs(stream.DeadLetterStream)[0]
	if reason := m.Header.Get(stream.HeaderReason); !strings.Contains(reason, "gave up after 2 deliveries") {
		t.Errorf("reason %q", reason)
	}
	var got envelope.Envelope
	if err := json.Unmarshal(m.Data, &got); err != nil || got.ID != e.ID {
		t.Errorf("dead letter holds %q (%v), want the envelope", m.Data, err)
	}
	if st := r.Stats(); st.PublishFailures != 2 || st.DeadLettered != 1 || len(sh.requests()) != 2 {
		t.Errorf("stats %+v, shadow requests %d", st, len(sh.requests()))
	}
}
