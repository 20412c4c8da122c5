package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// load sends n GET requests to the tap from conc clients at once and
// fails on any answer but 200.
func load(t *testing.T, s *Service, path string, n, conc int) {
	t.Helper()
	c := newClient(t)
	var wg sync.WaitGroup
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range conc {
		wg.Go(func() {
			for range next {
				resp, err := c.Get("http://" + s.Addr() + path)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
}

// streamEnvelopes reads every message the envelope stream holds (without
// consuming it) and counts the envelopes by id.
func streamEnvelopes(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx := testenv.Context(t)
	st, err := js.Stream(ctx, stream.EnvelopesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	if info.State.Msgs == 0 {
		return ids
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, env := range decodeMsg(t, &nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data}) {
			ids[env.ID]++
		}
	}
	return ids
}

// jetStream is a JetStream context on the test's own connection.
func (e *natsEnv) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// exactlyOnce checks that the stream holds n envelopes, each once.
func exactlyOnce(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	ids := streamEnvelopes(t, js)
	dups := 0
	for _, c := range ids {
		if c != 1 {
			dups++
		}
	}
	if len(ids) != n || dups != 0 {
		t.Errorf("the stream holds %d distinct envelopes (%d of them more than once), want %d each once", len(ids), dups, n)
	}
}

// waitAccounted waits until the tap holds nothing and every sampled
// envelope is published or dropped.
func waitAccounted(t *testing.T, s *Service) Stats {
	t.Helper()
	var st Stats
	testenv.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		st = s.Stats()
		if st.QueueDepth != 0 || st.Sampled != st.Published+st.DroppedTotal() {
			return fmt.Errorf("not settled: %+v", st)
		}
		return nil
	})
	return st
}

// Envelopes sent at once are packed in batches that the contract's
// decoder reads back: every envelope once, on its launch's subject, with
// its bodies; MIRROR_BATCH_MAX_ENVELOPES bounds a batch.
func TestBatchesRoundTrip(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.BatchMaxEnvelopes = 16; c.BatchMaxDelay = 50 * time.Millisecond })
	a := e.createLaunch(t, 100, nil, nil)
	b := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, a.ID, b.ID)
	const n = 200
	load(t, s, "/small?q=1", n, 16)
	st := waitAccounted(t, s)
	if st.Published != 2*n || st.DroppedTotal() != 0 {
		t.Fatalf("stats %+v, want %d published", st, 2*n)
	}
	if st.Batches >= st.Published/2 {
		t.Errorf("%d messages for %d envelopes: not batched", st.Batches, st.Published)
	}
	seen := map[string]bool{}
	perLaunch := map[string]int{}
	msgs := 0
	for len(seen) < 2*n {
		select {
		case m := <-e.msgs:
			msgs++
			envs := decodeMsg(t, m)
			if len(envs) > 16 {
				t.Errorf("batch of %d envelopes, max 16", len(envs))
			}
			for _, env := range envs {
				if seen[env.ID] {
					t.Fatalf("envelope %s twice", env.ID)
				}
				seen[env.ID] = true
				perLaunch[env.LaunchID]++
				if want := `{"path":"/small","query":"q=1"}`; string(env.Primary.Body) != want || env.Request.Path != "/small" ||
					env.Primary.BodySize != int64(len(want)) {
					t.Fatalf("envelope %+v body %q", env.Primary, env.Primary.Body)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d envelopes received", len(seen), 2*n)
		}
	}
	if perLaunch[a.ID] != n || perLaunch[b.ID] != n || uint64(msgs) != st.Batches {
		t.Errorf("per launch %v in %d messages (%d acknowledged)", perLaunch, msgs, st.Batches)
	}
	exactlyOnce(t, e.jetStream(t), 2*n)
}

// With MIRROR_BATCH_MAX_ENVELOPES=1 the tap publishes single v1 JSON
// envelopes, for runners that do not read batches.
func TestSingleEnvelopeMode(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.BatchMaxEnvelopes = 1 })
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	load(t, s, "/small", 20, 4)
	for range 20 {
		env, m := e.next(t, 10*time.Second)
		if m.Header.Get(envelope.BatchHeader) != "" || m.Header.Get(jetstream.MsgIDHeader) != env.ID {
			t.Fatalf("headers %v for envelope %s", m.Header, env.ID)
		}
		if _, err := envelope.Decode(m.Data); err != nil {
			t.Fatalf("not a v1 envelope: %v", err)
		}
	}
	if st := waitAccounted(t, s); st.Published != 20 || st.Batches != 20 {
		t.Errorf("stats %+v", st)
	}
}

// An envelope larger than the NATS max payload is cut to fit in a batch
// of its own, and flagged truncated.
func TestLargeEnvelopeIsCutToFitABatch(t *testing.T) {
	e := newNATSEnv(t)
	large := largeBody(3 << 20)
	primary := newPrimary(t, large)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.BodyLimit = 2 << 20; c.QueueMaxBytes = 64 << 20; c.MemoryLimit = "256MiB" })
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	load(t, s, "/large", 1, 1)
	env, msg := e.next(t, 10*time.Second)
	if max := e.nc.MaxPayload(); int64(len(msg.Data)) > max || msg.Header.Get(envelope.BatchHeader) == "" {
		t.Errorf("message of %d bytes (max payload %d), headers %v", len(msg.Data), max, msg.Header)
	}
	if !env.Primary.BodyTruncated || env.Primary.BodySize != int64(len(large)) ||
		len(env.Primary.Body) < 900<<10 || string(env.Primary.Body) != string(large[:len(env.Primary.Body)]) {
		t.Errorf("envelope truncated=%v size=%d len(body)=%d", env.Primary.BodyTruncated, env.Primary.BodySize, len(env.Primary.Body))
	}
}

// NATS restarts (same store) while envelopes are in flight: the tap keeps
// them and retries under the same Nats-Msg-Id, and once it is back every
// sampled envelope is in the stream exactly once, none dropped.
func TestRetriesThroughNATSRestartLoseAndDuplicateNothing(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.AckTimeout = time.Second })
	waitMirrored(t, s, e.createLaunch(t, 100, nil, nil).ID)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			load(t, s, "/small", 20, 4)
		}
	})
	testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if s.Stats().Published < 100 {
			return errNotYet
		}
		return nil
	})
	for range 2 {
		e.js.Stop()
		before := s.Stats().Sampled
		testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			if s.Stats().Sampled < before+100 {
				return errNotYet
			}
			return nil
		})
		e.js.Start()
		testenv.CheckFor(t, 20*time.Second, 5*time.Millisecond, func() error {
			if s.Stats().Published < before+200 {
				return fmt.Errorf("not publishing again: %+v", s.Stats())
			}
			return nil
		})
	}
	cancel()
	wg.Wait()
	st := waitAccounted(t, s)
	if st.DroppedTotal() != 0 || st.Retries == 0 {
		t.Errorf("stats %+v: want retries and no drops", st)
	}
	t.Logf("sampled %d, %d messages, %d retries, %d envelopes acked as duplicates", st.Sampled, st.Batches, st.Retries, st.DuplicateAcks)
	exactlyOnce(t, e.jetStream(t), int(st.Sampled))
}

// The stream is deleted under the tap: publishes find no stream, the tap
// creates it again and retries; nothing is lost.
func TestRetriesUntilTheStreamIsBack(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.AckTimeout = 500 * time.Millisecond })
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	js := e.jetStream(t)
	if err := js.DeleteStream(testenv.Context(t), stream.EnvelopesStream); err != nil {
		t.Fatal(err)
	}
	load(t, s, "/small", 50, 4)
	st := waitAccounted(t, s)
	if st.Published != 50 || st.DroppedTotal() != 0 {
		t.Errorf("stats %+v, want all 50 published", st)
	}
	exactlyOnce(t, js, 50)
}

// pauseProxy forwards TCP to a server; while paused it keeps reading the
// server's bytes but holds them back from the client (the acks are late,
// not lost to the protocol).
type pauseProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	paused bool
	held   []func()
	wg     sync.WaitGroup
}

func startPauseProxy(t *testing.T, target string) *pauseProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pauseProxy{ln: ln, target: target}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); p.resume(); p.wg.Wait() })
	return p
}

func (p *pauseProxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *pauseProxy) serve(c net.Conn) {
	srv, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	defer c.Close()
	defer srv.Close()
	go func() { _, _ = io.Copy(srv, c); srv.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := srv.Read(buf)
		if n > 0 {
			chunk := append([]byte(nil), buf[:n]...)
			p.mu.Lock()
			if p.paused {
				p.held = append(p.held, func() { _, _ = c.Write(chunk) })
				p.mu.Unlock()
				continue
			}
			p.mu.Unlock()
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *pauseProxy) pause() { p.mu.Lock(); p.paused = true; p.mu.Unlock() }

// resume writes what was held back, in order, then lets bytes through.
func (p *pauseProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.held {
		w()
	}
	p.held, p.paused = nil, false
}

// The stream stores a batch but its ack does not come back in time: the
// tap retries under the same Nats-Msg-Id, the stream answers "duplicate",
// and the envelopes count as published, once, never as dropped.
func TestLostAckOfAStoredBatchCountsPublished(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	proxy := startPauseProxy(t, e.js.URL()[len("nats://"):])
	s, _ := startMirror(t, e, primary.URL, func(c *Config) {
		c.NATSURL = proxy.URL()
		c.AckTimeout = 300 * time.Millisecond
	})
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	load(t, s, "/small", 5, 1)
	waitAccounted(t, s)

	proxy.pause()
	const n = 40
	load(t, s, "/small", n, 4)
	js := e.jetStream(t)
	// Stored, and not answered in time: retried.
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := len(streamEnvelopes(t, js)); got != 5+n {
			return fmt.Errorf("stream holds %d envelopes", got)
		}
		// Every batch held was sent again at least once: its first
		// attempt's ack is obsolete.
		retried, held := 0, 0
		s.pub.mu.Lock()
		for _, b := range s.pub.inflight {
			held += b.n
			if b.attempts > 1 {
				retried += b.n
			}
		}
		for _, b := range s.pub.retries {
			held += b.n
			retried += b.n // attempts > 1 or not, the next one is a retry
		}
		s.pub.mu.Unlock()
		if held != n || retried != n {
			return fmt.Errorf("%d of %d envelopes held, %d retried", held, n, retried)
		}
		return nil
	})
	proxy.resume()
	st := waitAccounted(t, s)
	if st.Published != 5+n || st.DroppedTotal() != 0 || st.DuplicateAcks != n {
		t.Errorf("stats %+v: want all %d published, %d of them on a duplicate ack", st, 5+n, n)
	}
	exactlyOnce(t, js, 5+n)
}

// With NATS down under load the publisher holds at most MIRROR_QUEUE_SIZE
// envelopes and MIRROR_QUEUE_MAX_BYTES; the rest is dropped as queue_full,
// counted, and the heap does not grow with the traffic. When NATS comes
// back, what was held is published.
func TestNATSDownMemoryIsBoundedByTheQueueBudget(t *testing.T) {
	e := newNATSEnv(t)
	body := largeBody(64 << 10)
	primary := newPrimary(t, body)
	const maxBytes = 2 << 20
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.QueueMaxBytes = maxBytes; c.QueueSize = 1000 })
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	e.js.Stop()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	load(t, s, "/large", 20, 4) // warm up connections and buffers
	base := heap()
	const n = 400 // 25 MiB of bodies
	load(t, s, "/large", n, 4)
	// The tap builds an envelope after the client has its answer, so the
	// last ones may still be on their way to the queue.
	var st Stats
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st = s.Stats(); st.Sampled != st.Published+st.DroppedTotal()+uint64(st.QueueDepth) {
			return fmt.Errorf("not accounted for yet: %+v", st)
		}
		return nil
	})
	grown := int64(heap()) - int64(base)
	held := s.queueBytes.Load()
	t.Logf("held %d envelopes, %d bytes; heap grew %d KiB; %d dropped queue_full", st.QueueDepth, held, grown>>10, st.Dropped[ReasonQueueFull])
	if held > maxBytes || st.QueueDepth*(64<<10) > maxBytes || st.Published != 0 || st.Dropped[ReasonQueueFull] < n-maxBytes/(64<<10) {
		t.Errorf("held %d bytes, stats %+v", held, st)
	}
	if grown > 3*maxBytes {
		t.Errorf("heap grew %d KiB with NATS down, budget %d KiB", grown>>10, maxBytes>>10)
	}
	e.js.Start()
	st = waitAccounted(t, s)
	if st.Published == 0 || st.Published+st.Dropped[ReasonQueueFull] != st.Sampled {
		t.Errorf("after NATS came back: %+v", st)
	}
}

// At shutdown with NATS down, what the tap holds is dropped as shutdown
// once the drain timeout is over: counted, not lost.
func TestShutdownWithNATSDownCountsWhatIsHeld(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, stop := startMirror(t, e, primary.URL, func(c *Config) { c.DrainTimeout = 300 * time.Millisecond })
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	e.js.Stop()
	load(t, s, "/small", 30, 3)
	stop() // checks Sampled == Published + Dropped
	if st := s.Stats(); st.Dropped[ReasonShutdown] != 30 {
		t.Errorf("stats %+v, want 30 shutdown drops", st)
	}
}

// The errors seen while a stream elects a leader or NATS restarts are
// retried; only a message over the max payload and the closed publisher
// are not.
func TestClassifyPublishErrors(t *testing.T) {
	for _, err := range []error{
		nats.ErrNoResponders, jetstream.ErrNoStreamResponse, jetstream.ErrAsyncPublishTimeout,
		context.DeadlineExceeded, nats.ErrTimeout, jetstream.ErrJetStreamNotEnabled,
		jetstream.ErrJetStreamNotEnabledForAccount, jetstream.ErrStreamNotFound, nats.ErrDisconnected,
		nats.ErrReconnectBufExceeded, nats.ErrConnectionReconnecting, jetstream.ErrTooManyStalledMsgs,
		&jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"},
		fmt.Errorf("wrapped: %w", jetstream.ErrJetStreamNotEnabled),
	} {
		if r, retry := classify(err); !retry || r != dropNATSError {
			t.Errorf("%v: reason %s, retry %v", err, reasonNames[r], retry)
		}
	}
	for err, want := range map[error]dropReason{
		nats.ErrMaxPayload:                    dropTooLarge,
		jetstream.ErrJetStreamPublisherClosed: dropShutdown,
		nats.ErrConnectionClosed:              dropShutdown,
		&jetstream.APIError{ErrorCode: 10054}: dropTooLarge,
	} {
		if r, retry := classify(err); retry || r != want {
			t.Errorf("%v: reason %s, retry %v", err, reasonNames[r], retry)
		}
	}
}

func TestPublisherSettingsAreChecked(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"negative batch size":         func(c *Config) { c.BatchMaxEnvelopes = -1 },
		"negative batch bytes":        func(c *Config) { c.BatchMaxBytes = -1 },
		"negative batch delay":        func(c *Config) { c.BatchMaxDelay = -time.Millisecond },
		"negative retry time":         func(c *Config) { c.PublishRetryFor = -time.Second },
		"retries past the dup window": func(c *Config) { c.PublishRetryFor = stream.DuplicateWindow },
		"negative pending acks":       func(c *Config) { c.MaxPending = -1 },
		"negative queue bytes":        func(c *Config) { c.QueueMaxBytes = -1 },
	} {
		cfg := Config{PrimaryURL: "http://primary", Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"}
		mod(&cfg)
		if _, err := New(cfg, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

// A batch whose encoding exceeds the max payload is split; an envelope
// alone over it has its bodies cut to fit and flagged truncated.
func TestEncodeSplitsAndCutsToTheLimit(t *testing.T) {
	s := newBareService()
	s.cfg.BatchMaxEnvelopes = 64
	mk := func(n int) *envelope.Envelope {
		env := benchEnvelope()
		env.ID = envelope.NewID()
		env.Primary.Body = largeBody(n)
		env.Primary.BodySize = int64(n)
		return env
	}
	const limit = 64 << 10
	if _, err := s.encode([]*envelope.Envelope{mk(40 << 10), mk(40 << 10)}, 80<<10, limit); !errors.Is(err, errSplit) {
		t.Errorf("two envelopes over the limit: %v, want errSplit", err)
	}
	big := mk(200 << 10)
	data, err := s.encode([]*envelope.Envelope{big}, 200<<10, limit)
	if err != nil || len(data) > limit || len(data) < limit-1024 {
		t.Fatalf("one large envelope: %d bytes, %v", len(data), err)
	}
	envs, bad, err := envelope.DecodeEnvelopeBatch(data)
	if err != nil || len(bad) != 0 || len(envs) != 1 {
		t.Fatalf("decode: %v %v", err, bad)
	}
	if p := envs[0].Primary; !p.BodyTruncated || p.BodySize != 200<<10 || string(p.Body) != string(largeBody(200 << 10)[:len(p.Body)]) {
		t.Errorf("primary truncated=%v size=%d len=%d", p.BodyTruncated, p.BodySize, len(p.Body))
	}
	huge := benchEnvelope()
	huge.Request.Headers = http.Header{"X-Huge": {string(largeBody(limit))}}
	if _, err := s.encode([]*envelope.Envelope{huge}, limit, limit); !errors.Is(err, errTooLarge) {
		t.Errorf("headers over the limit: %v, want errTooLarge", err)
	}
}
