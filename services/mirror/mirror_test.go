package mirror

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// rawGet sends a GET over a fresh connection and returns the response
// exactly as it came over the wire.
func rawGet(t *testing.T, addr, path string) []byte {
	t.Helper()
	return []byte(exchange(t, addr, "", "GET "+path+" HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: raw\r\nConnection: close\r\n\r\n"))
}

// wire normalizes a raw response for comparison: status line and body are
// kept byte for byte, header lines too but sorted by name, stably. A Go
// server writes a Content-Length it computed itself after the others, but
// one it was handed among them; the order of fields with different names
// carries no meaning (RFC 9110, 5.3), the order of same-name fields does and
// is kept.
func wire(t *testing.T, raw []byte) []byte {
	t.Helper()
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no end of headers in %q", raw)
	}
	lines := strings.Split(string(head), "\r\n")
	fields := lines[1:]
	slices.SortStableFunc(fields, func(a, b string) int {
		an, _, _ := strings.Cut(a, ":")
		bn, _, _ := strings.Cut(b, ":")
		return strings.Compare(strings.ToLower(an), strings.ToLower(bn))
	})
	return append([]byte(lines[0]+"\r\n"+strings.Join(fields, "\r\n")+"\r\n\r\n"), body...)
}

func TestResponsesAreByteIdenticalAndEnvelopesComplete(t *testing.T) {
	e := newNATSEnv(t)
	large := largeBody(3 << 20)
	primary := newPrimary(t, large)
	const limit = 256 << 10
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.BodyLimit = limit })
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	primaryAddr := strings.TrimPrefix(primary.URL, "http://")

	// On the wire: status line, headers (in order) and body are the same
	// bytes whether the primary answers directly or through the tap.
	for _, path := range []string{"/small?x=1&y=%20z", "/large", "/missing"} {
		direct := wire(t, rawGet(t, primaryAddr, path))
		tapped := wire(t, rawGet(t, s.Addr(), path))
		if !bytes.Equal(direct, tapped) {
			t.Errorf("GET %s through the tap differs from the primary:\n direct: %.300q\n tapped: %.300q", path, direct, tapped)
		}
	}

	// Envelopes: one per request, for the one launch.
	byPath := map[string]bool{}
	for range 3 {
		env, msg := e.next(t, 10*time.Second)
		byPath[env.Request.Path] = true
		if msg.Subject != stream.EnvelopeSubject(l.ID) || env.LaunchID != l.ID {
			t.Errorf("envelope on %s for launch %s, want launch %s", msg.Subject, env.LaunchID, l.ID)
		}
		if env.ID == "" || msg.Header.Get(jetstream.MsgIDHeader) == "" { // next checks that they match
			t.Errorf("Nats-Msg-Id %q, envelope id %q", msg.Header.Get(jetstream.MsgIDHeader), env.ID)
		}
		if env.TapID != "tap-test" || env.Request.Method != "GET" || env.Request.Host != "shop.example" {
			t.Errorf("envelope request/tap = %+v / %s", env.Request, env.TapID)
		}
		if env.Request.Headers.Get("User-Agent") != "raw" || env.Primary.LatencyUS <= 0 {
			t.Errorf("request headers %v, latency %dµs", env.Request.Headers, env.Primary.LatencyUS)
		}
		if time.Since(env.ReceivedAt) > time.Minute || env.ReceivedAt.Location() != time.UTC {
			t.Errorf("received_at %v", env.ReceivedAt)
		}
		switch env.Request.Path {
		case "/small":
			want := `{"path":"/small","query":"x=1&y=%20z"}`
			if env.Request.RawQuery != "x=1&y=%20z" || env.Primary.Status != 200 || string(env.Primary.Body) != want ||
				env.Primary.BodySize != int64(len(want)) || env.Primary.BodyTruncated {
				t.Errorf("small envelope: query %q primary %+v body %s", env.Request.RawQuery, env.Primary, env.Primary.Body)
			}
			cookie, err := s.protection.keys.Open(l.ID, "Set-Cookie", env.Primary.Headers.Get("Set-Cookie"))
			if got := env.Primary.Headers["X-Multi"]; len(got) != 2 || got[0] != "a" || got[1] != "b" ||
				err != nil || cookie != "session=1; Path=/" {
				t.Errorf("small envelope headers %v (Set-Cookie opens to %q, %v)", env.Primary.Headers, cookie, err)
			}
		case "/large":
			if !env.Primary.BodyTruncated || env.Primary.BodySize != int64(len(large)) ||
				len(env.Primary.Body) != limit || !bytes.Equal(env.Primary.Body, large[:limit]) {
				t.Errorf("large envelope: truncated=%v size=%d len(body)=%d", env.Primary.BodyTruncated, env.Primary.BodySize, len(env.Primary.Body))
			}
		case "/missing":
			if env.Primary.Status != http.StatusNotFound || string(env.Primary.Body) != "no such thing\n" {
				t.Errorf("missing envelope %+v", env.Primary)
			}
		}
	}
	if len(byPath) != 3 {
		t.Errorf("envelopes for paths %v, want /small, /large, /missing", byPath)
	}

	// Parsed comparison for what framing may change (chunk boundaries are
	// per connection) and for HEAD.
	c := newClient(t)
	for _, tc := range []struct{ method, path string }{{"GET", "/stream"}, {"HEAD", "/small"}, {"GET", "/large"}} {
		dr, db := get(t, c, tc.method, primary.URL+tc.path, nil)
		tr, tb := get(t, c, tc.method, "http://"+s.Addr()+tc.path, nil)
		if dr.StatusCode != tr.StatusCode || !bytes.Equal(db, tb) || fmt.Sprint(dr.Header) != fmt.Sprint(tr.Header) ||
			dr.ContentLength != tr.ContentLength || fmt.Sprint(dr.TransferEncoding) != fmt.Sprint(tr.TransferEncoding) {
			t.Errorf("%s %s: direct %d %v (%d bytes), tapped %d %v (%d bytes)", tc.method, tc.path,
				dr.StatusCode, dr.Header, len(db), tr.StatusCode, tr.Header, len(tb))
		}
	}
	for range 3 {
		env, _ := e.next(t, 10*time.Second)
		// "line N xxx…\n" for N in 0..19: 10 lines of 1008 bytes, 10 of 1009.
		if env.Request.Path == "/stream" && (env.Primary.BodyTruncated || env.Primary.BodySize != 20170 || len(env.Primary.Body) != 20170) {
			t.Errorf("stream envelope truncated=%v size=%d len=%d", env.Primary.BodyTruncated, env.Primary.BodySize, len(env.Primary.Body))
		}
		if env.Request.Method == "HEAD" && (env.Primary.Status != 200 || env.Primary.BodySize != 0) {
			t.Errorf("HEAD envelope %+v", env.Primary)
		}
	}
	st := s.Stats()
	if st.Proxied != 6 || st.Sampled != 6 {
		t.Errorf("stats %+v, want 6 proxied and sampled", st)
	}
}

func TestLargeEnvelopeIsCutToFitNATSMaxPayload(t *testing.T) {
	e := newNATSEnv(t)
	large := largeBody(3 << 20)
	primary := newPrimary(t, large)
	s, _ := startMirror(t, e, primary.URL, nil) // default 1 MiB capture
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)

	resp, body := get(t, newClient(t), "GET", "http://"+s.Addr()+"/large", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, large) {
		t.Fatalf("client got %d and %d bytes", resp.StatusCode, len(body))
	}
	env, msg := e.next(t, 10*time.Second)
	if max := e.nc.MaxPayload(); int64(len(msg.Data)) > max {
		t.Errorf("message of %d bytes exceeds max payload %d", len(msg.Data), max)
	}
	if !env.Primary.BodyTruncated || env.Primary.BodySize != int64(len(large)) ||
		len(env.Primary.Body) < 256<<10 || !bytes.Equal(env.Primary.Body, large[:len(env.Primary.Body)]) {
		t.Errorf("envelope truncated=%v size=%d len(body)=%d", env.Primary.BodyTruncated, env.Primary.BodySize, len(env.Primary.Body))
	}
}

func TestPrimarySeesTheRequestAsSent(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	c := newClient(t)
	view := func(addr string) string {
		req, _ := http.NewRequest("GET", "http://"+addr+"/view?b=2&a=1;c", nil)
		req.Host = "shop.example"
		req.Header.Set("X-Forwarded-For", "10.0.0.1")
		req.Header.Set("X-Forwarded-Host", "lb.example")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	direct := view(strings.TrimPrefix(primary.URL, "http://"))

	trustLocal := func(c *Config) { c.TrustedProxies = []string{"127.0.0.1"} }
	s, _ := startMirror(t, e, primary.URL, trustLocal)
	if got := view(s.Addr()); got != direct {
		t.Errorf("primary's view through the tap:\n%s\nwant (direct):\n%s", got, direct)
	}
	// OPTIONS * is the primary's to answer, as "OPTIONS *".
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "OPTIONS * HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	conn.Close()
	if !bytes.HasSuffix(raw, []byte("\r\n\r\noptions uri=*")) {
		t.Errorf("OPTIONS * through the tap: %q", raw)
	}

	s2, _ := startMirror(t, e, primary.URL, func(c *Config) { trustLocal(c); c.XForwarded = true; c.RewriteHost = true })
	got := view(s2.Addr())
	host := strings.TrimPrefix(primary.URL, "http://")
	if !strings.Contains(got, "host="+host+"\n") || !strings.Contains(got, `xff=["10.0.0.1, 127.0.0.1"]`) ||
		!strings.Contains(got, `xfh=["shop.example"]`) {
		t.Errorf("with MIRROR_X_FORWARDED and MIRROR_REWRITE_HOST the primary saw:\n%s", got)
	}
}

func TestPOSTIsMirroredOnlyWhenTheLaunchListsIt(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, l := mirrorAll(t, e, primary.URL) // default methods: GET, HEAD, OPTIONS
	c := newClient(t)
	payload := largeBody(10 << 10)

	resp, body := get(t, c, "POST", "http://"+s.Addr()+"/echo", payload)
	if resp.StatusCode != http.StatusCreated || !bytes.Equal(body, payload) {
		t.Fatalf("POST answered %d with %d bytes", resp.StatusCode, len(body))
	}
	if st := s.Stats(); st.Sampled != 0 || st.Proxied != 1 {
		t.Fatalf("POST sampled although the launch does not list it: %+v", st)
	}
	e.expectNone(t)

	ctx := testenv.Context(t)
	if _, err := e.store.Update(ctx, l.ID, func(l *launch.Launch) error {
		l.Methods = []string{"GET", "POST"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if w := s.watcher.Load(); w != nil {
			if ls := w.Snapshot().Mirrored[testService]; len(ls) == 1 && ls[0].AllowsMethod("POST") {
				return nil
			}
		}
		return errNotYet
	})

	// A body with a known length, and a chunked one.
	resp, body = get(t, c, "POST", "http://"+s.Addr()+"/echo?id=7", payload)
	if resp.StatusCode != http.StatusCreated || !bytes.Equal(body, payload) {
		t.Fatalf("POST answered %d with %d bytes", resp.StatusCode, len(body))
	}
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/echo?id=8", io.MultiReader(bytes.NewReader(payload[:100]), bytes.NewReader(payload[100:])))
	req.ContentLength = -1
	cresp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cbody, _ := io.ReadAll(cresp.Body)
	cresp.Body.Close()
	if !bytes.Equal(cbody, payload) {
		t.Fatalf("chunked POST echoed %d bytes", len(cbody))
	}
	for range 2 {
		env, _ := e.next(t, 10*time.Second)
		if env.Request.Method != "POST" || !bytes.Equal(env.Request.Body, payload) || env.Request.BodySize != int64(len(payload)) ||
			env.Request.BodyTruncated || env.Primary.Status != http.StatusCreated || !bytes.Equal(env.Primary.Body, payload) {
			t.Errorf("POST envelope %s: request body %d bytes (size %d, truncated %v), primary %d with %d bytes",
				env.Request.RawQuery, len(env.Request.Body), env.Request.BodySize, env.Request.BodyTruncated, env.Primary.Status, len(env.Primary.Body))
		}
	}
}

func TestNothingPublishedAtZeroPercentOrForStoppedLaunches(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := startMirror(t, e, primary.URL, nil)
	c := newClient(t)
	send := func(n int) {
		for range n {
			if resp, _ := get(t, c, "GET", "http://"+s.Addr()+"/small", nil); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	}

	zero := e.createLaunch(t, 0, nil, nil)
	paused := e.createLaunch(t, 100, nil, func(l *launch.Launch) error { l.Status = launch.StatusPaused; return nil })
	waitKnown(t, s, zero.ID)
	waitKnown(t, s, paused.ID)
	send(50)
	if st := s.Stats(); st.Sampled != 0 || st.Proxied != 50 {
		t.Fatalf("stats %+v: nothing should be sampled at 0%% or while paused", st)
	}
	e.expectNone(t)

	// An active launch is published until it is rolled back.
	active := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, active.ID)
	send(3)
	for range 3 {
		if env, _ := e.next(t, 10*time.Second); env.LaunchID != active.ID {
			t.Fatalf("envelope for launch %s, want %s", env.LaunchID, active.ID)
		}
	}
	if _, err := e.store.Update(testenv.Context(t), active.ID, func(l *launch.Launch) error {
		l.Status = launch.StatusRolledBack
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitMirrored(t, s)
	before := s.Stats()
	send(20)
	after := s.Stats()
	if after.Sampled != before.Sampled {
		t.Errorf("sampled went from %d to %d after the rollback", before.Sampled, after.Sampled)
	}
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := s.Stats(); st.Published != st.Sampled {
			return fmt.Errorf("published %d of %d", st.Published, st.Sampled)
		}
		return nil
	})
	e.expectNone(t)
}

func TestEachSampledLaunchGetsItsOwnEnvelope(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := startMirror(t, e, primary.URL, nil)
	a := e.createLaunch(t, 100, nil, nil)
	b := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, a.ID, b.ID)
	get(t, newClient(t), "GET", "http://"+s.Addr()+"/small", nil)
	e1, m1 := e.next(t, 10*time.Second)
	e2, m2 := e.next(t, 10*time.Second)
	if e1.ID == e2.ID || e1.LaunchID == e2.LaunchID || m1.Subject != stream.EnvelopeSubject(e1.LaunchID) || m2.Subject != stream.EnvelopeSubject(e2.LaunchID) {
		t.Errorf("envelopes %s/%s on %s and %s/%s on %s", e1.ID, e1.LaunchID, m1.Subject, e2.ID, e2.LaunchID, m2.Subject)
	}
}

// While NATS is away the tap serves every request and holds the envelopes
// (within its budget), retrying them; once NATS is back they are all
// published, none lost.
func TestNATSOutageHoldsEnvelopesNotRequestsAndRecovers(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, l := mirrorAll(t, e, primary.URL)
	c := newClient(t)
	request := func() {
		t.Helper()
		resp, body := get(t, c, "GET", "http://"+s.Addr()+"/small?q=1", nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), `{"path":"/small"`) {
			t.Fatalf("client got %d %q", resp.StatusCode, body)
		}
	}
	health := func() (int, admin.HealthReport) { return testenv.Health(t, s.AdminAddr()) }
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if code, rep := health(); code != 200 {
			return fmt.Errorf("healthz %d %v", code, rep)
		}
		return nil
	})
	request()
	e.next(t, 10*time.Second)

	e.js.Stop()
	for range 20 {
		request()
	}
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		request()
		if st := s.Stats(); st.Retries == 0 || st.QueueDepth == 0 {
			return fmt.Errorf("no envelope held for a retry yet: %+v", st)
		}
		return nil
	})
	if code, rep := health(); code != http.StatusServiceUnavailable || rep.Checks["nats"] == "ok" {
		t.Errorf("healthz during the outage: %d %v", code, rep)
	}
	if resp, _ := get(t, c, "GET", "http://"+s.AdminAddr()+"/livez", nil); resp.StatusCode != 200 {
		t.Errorf("livez during the outage: %d", resp.StatusCode)
	}

	e.js.Start()
	// Nothing to do but keep sending: the tap reconnects by itself.
	for len(e.msgs) > 0 {
		<-e.msgs
	}
	testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		request()
		select {
		case m := <-e.msgs:
			if m.Subject == stream.EnvelopeSubject(l.ID) {
				return nil
			}
		default:
		}
		return fmt.Errorf("no envelope published since NATS came back: %+v", s.Stats())
	})
	testenv.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if st := s.Stats(); st.Published != st.Sampled || st.DroppedTotal() != 0 {
			return fmt.Errorf("not every envelope published after the outage: %+v", st)
		}
		return nil
	})
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if code, rep := health(); code != 200 {
			return fmt.Errorf("healthz %d %v", code, rep)
		}
		return nil
	})
	// The launch watch came back too: a rollback made now is seen.
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := e.store.Update(testenv.Context(t), l.ID, func(l *launch.Launch) error {
			l.Status = launch.StatusRolledBack
			return nil
		})
		return err
	})
	waitMirrored(t, s)
}

func TestFullQueueDropsWithoutDelayingClients(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	entered := make(chan struct{}, 100)
	release := make(chan struct{})
	s, stop := startMirror(t, e, primary.URL, func(c *Config) { c.QueueSize = 2; c.Publishers = 1 }, func(s *Service) {
		s.publishHook = func(*envelope.Envelope) { entered <- struct{}{}; <-release }
	})
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	c := newClient(t)
	request := func() {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, _ := get(t, c, "GET", "http://"+s.Addr()+"/small", nil); resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("request blocked behind the stuck publisher")
		}
	}

	request()
	<-entered // the publisher holds envelope 1
	request() // envelope 2 waits in the queue
	for range 10 {
		request() // no room: dropped
	}
	// The tap builds an envelope after its client has the answer, so the
	// last drop may be counted a moment after the last response.
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := s.Stats(); st.Dropped[ReasonQueueFull] != 10 || st.QueueDepth != 2 || st.Sampled != 12 {
			return fmt.Errorf("stats %+v, want 10 queue_full drops and 2 held", st)
		}
		return nil
	})
	close(release)
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := s.Stats(); st.Published != 2 {
			return fmt.Errorf("published %d, want 2", st.Published)
		}
		return nil
	})
	stop()
}

func TestClientAbortIsCountedNotPublished(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := mirrorAll(t, e, primary.URL)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.Addr()+"/slow", nil)
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	cancel() // the client leaves mid-body
	resp.Body.Close()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := s.Stats(); st.Dropped[ReasonClientAbort] != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	e.expectNone(t)
}

func TestUnreachablePrimaryIs502AndNotPublished(t *testing.T) {
	e := newNATSEnv(t)
	s, _ := startMirror(t, e, fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), nil)
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	resp, _ := get(t, newClient(t), "GET", "http://"+s.Addr()+"/small", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := s.Stats(); st.ProxyErrors != 1 || st.Dropped[ReasonPrimaryError] != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	e.expectNone(t)
}

func TestShutdownPublishesWhatIsQueued(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, stop := startMirror(t, e, primary.URL, func(c *Config) { c.Publishers = 1 }, func(s *Service) {
		s.publishHook = func(*envelope.Envelope) { time.Sleep(5 * time.Millisecond) }
	})
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	c := newClient(t)
	for range 30 {
		get(t, c, "GET", "http://"+s.Addr()+"/small", nil)
	}
	if st := s.Stats(); st.QueueDepth == 0 {
		t.Logf("queue already empty before shutdown: %+v", st)
	}
	stop()
	if st := s.Stats(); st.Published != 30 {
		t.Errorf("after shutdown: %+v, want all 30 published", st)
	}
	for range 30 {
		e.next(t, 5*time.Second)
	}
}

func TestMetricsAreServed(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := mirrorAll(t, e, primary.URL)
	c := newClient(t)
	get(t, c, "GET", "http://"+s.Addr()+"/small", nil)
	e.next(t, 10*time.Second)
	body := testenv.Metrics(t, s.AdminAddr())
	for _, want := range []string{
		"darklaunch_mirror_requests_total 1",
		"darklaunch_mirror_envelopes_sampled_total 1",
		`darklaunch_mirror_envelopes_dropped_total{reason="queue_full"} 0`,
		"darklaunch_mirror_launches_mirrored 1",
		"darklaunch_mirror_primary_latency_seconds_count 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		m := testenv.Metrics(t, s.AdminAddr())
		if !strings.Contains(m, "darklaunch_mirror_envelopes_published_total 1") || !strings.Contains(m, "darklaunch_mirror_queue_depth 0") {
			return errNotYet
		}
		return nil
	})
}

func TestProxyServesWhileNATSIsDownAtStart(t *testing.T) {
	e := newNATSEnv(t)
	e.js.Stop()
	primary := newPrimary(t, nil)
	s, _ := startMirror(t, e, primary.URL, nil)
	c := newClient(t)
	for range 5 {
		if resp, _ := get(t, c, "GET", "http://"+s.Addr()+"/small", nil); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	e.js.Start()
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !e.nc.IsConnected() {
			return errNotYet
		}
		return nil
	})
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID) // the watch was established once NATS came up
	get(t, c, "GET", "http://"+s.Addr()+"/small", nil)
	if env, _ := e.next(t, 10*time.Second); env.LaunchID != l.ID {
		t.Errorf("envelope for %s", env.LaunchID)
	}
}
