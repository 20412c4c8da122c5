package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// 1,000 GET requests at 100% sampling: clients see exactly the primary's
// answers, ClickHouse ends with one row per mirrored request, and the
// report shows each regression the demo shadow carries.
func TestPipelineThousandRequests(t *testing.T) {
	s := startStack(t)
	l := s.createLaunch(s.shadow.URL, 100)
	probes := s.waitMirrorSees()

	direct := &http.Client{Timeout: 10 * time.Second}
	paths := []func(int) string{
		func(i int) string { return fmt.Sprintf("/api/users/%d", 1+i%50) },
		func(i int) string { return fmt.Sprintf("/api/orders/%d", 1+i%60) },
		func(i int) string { return fmt.Sprintf("/api/search?q=item%d", i%20) },
		func(i int) string { return fmt.Sprintf("/api/inventory/%d", 10000+i%30) },
	}
	for i := range 1000 {
		path := paths[i%len(paths)](i)
		code, hdr, body := s.send("GET", path, nil)
		resp, err := direct.Get(s.primary.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if code != resp.StatusCode || !bytes.Equal(body, want) {
			t.Fatalf("%s through the mirror: %d %q; the primary says %d %q", path, code, body, resp.StatusCode, want)
		}
		for _, h := range []string{"Content-Type", "Content-Length"} {
			if hdr.Get(h) != resp.Header.Get(h) {
				t.Fatalf("%s: header %s %q through the mirror, %q from the primary", path, h, hdr.Get(h), resp.Header.Get(h))
			}
		}
	}
	st := s.drained()
	mirrored := uint64(1000) + probes
	if st.Published != mirrored || st.DroppedTotal() != 0 {
		t.Fatalf("mirror published %d, dropped %v; want %d published, none dropped", st.Published, st.Dropped, mirrored)
	}
	s.waitRows(l.ID, mirrored)

	// No duplicates even before merges: raw rows equal distinct envelopes.
	var raw, distinct uint64
	if err := s.ch.QueryRow(context.Background(),
		"SELECT count(), uniqExact(envelope_id) FROM darklaunch.comparisons WHERE launch_id = ?", l.ID).Scan(&raw, &distinct); err != nil {
		t.Fatal(err)
	}
	if raw != mirrored || distinct != mirrored {
		t.Fatalf("%d rows for %d distinct envelopes, want %d of each", raw, distinct, mirrored)
	}

	rep := s.report(l.ID)
	if rep.Totals.Compared != mirrored {
		t.Fatalf("report compared %d, want %d", rep.Totals.Compared, mirrored)
	}
	users := routeOf(t, &rep, "/api/users/{id}")
	if users.Mismatches != 0 || users.Compared < 250 {
		t.Errorf("identical route: %d mismatches in %d pairs, want 0", users.Mismatches, users.Compared)
	}
	orders := routeOf(t, &rep, "/api/orders/{id}")
	if orders.Compared != 250 || orders.Mismatches != 250 {
		t.Errorf("changed-shape route: %d mismatches in %d pairs, want all 250", orders.Mismatches, orders.Compared)
	}
	diffs := map[string]uint64{}
	for _, d := range rep.Diffs {
		diffs[d.Path+" "+d.Kind] = d.Count
	}
	for _, want := range []string{"$.total type_changed", "$.currency missing_field"} {
		if diffs[want] != 250 {
			t.Errorf("diff %q counted %d times, want 250 (diffs: %v)", want, diffs[want], diffs)
		}
	}
	// The slow route: the shadow sleeps slowFactor times longer. Load
	// lengthens both sides' tails alike (a p95 ratio once read 112 vs
	// 54 ms), so the check is on medians and absolute milliseconds: the
	// shadow's median must be later than the primary's by at least half
	// the injected gap, and its p95 at least the shadow's own delay.
	search := routeOf(t, &rep, "/api/search")
	gapMS := float64((slowFactor-1)*searchDelay) / float64(time.Millisecond)
	shadowDelayMS := float64(slowFactor*searchDelay) / float64(time.Millisecond)
	t.Logf("slow route latency: primary p50 %.2f p95 %.2f ms, shadow p50 %.2f p95 %.2f ms (injected gap %.0f ms)",
		search.LatencyMS.Primary.P50, search.LatencyMS.Primary.P95, search.LatencyMS.Shadow.P50, search.LatencyMS.Shadow.P95, gapMS)
	if d := search.LatencyMS.Shadow.P50 - search.LatencyMS.Primary.P50; d < gapMS/2 {
		t.Errorf("slow route: the shadow's median %.2f ms is only %.2f ms above the primary's %.2f ms, want at least %.0f (half the injected gap)",
			search.LatencyMS.Shadow.P50, d, search.LatencyMS.Primary.P50, gapMS/2)
	}
	if search.LatencyMS.Shadow.P95 < shadowDelayMS {
		t.Errorf("slow route: shadow p95 %.2f ms is below its injected delay of %.0f ms", search.LatencyMS.Shadow.P95, shadowDelayMS)
	}
	inv := routeOf(t, &rep, "/api/inventory/{id}")
	if inv.Mismatches != 25 { // every 10th of 250 requests answers 500
		t.Errorf("erroring route: %d mismatches, want 25", inv.Mismatches)
	}
	if rep.Totals.ShadowErrors != 0 {
		t.Errorf("shadow errors %d with a healthy shadow", rep.Totals.ShadowErrors)
	}
}

// Writes are never replayed unless the launch lists the method; a PATCH of
// the launch's methods applies to the next requests without restart.
func TestPostMirroredOnlyWhenListed(t *testing.T) {
	s := startStack(t)
	l := s.createLaunch(s.shadow.URL, 100)
	probes := s.waitMirrorSees()
	for range 20 {
		if code, _, _ := s.send("POST", "/api/orders", []byte(`{"sku":"A"}`)); code != 201 {
			t.Fatalf("POST through the mirror: %d", code)
		}
	}
	s.drained()
	s.waitRows(l.ID, probes)
	if n := s.rows(l.ID, "method = 'POST'"); n != 0 {
		t.Fatalf("%d POST rows for a GET-only launch", n)
	}
	hits := s.shadowHits.Load()

	var patched launch.Launch
	s.apiOK("PATCH", "/v1/launches/"+l.ID, map[string]any{"methods": []string{"GET", "POST"}}, 200, &patched)
	if !slices.Contains(patched.Methods, "POST") {
		t.Fatalf("patched methods %v", patched.Methods)
	}
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		s.send("POST", "/api/orders", []byte(`{"sku":"B"}`))
		if s.rows(l.ID, "method = 'POST'") == 0 {
			return fmt.Errorf("no POST row yet")
		}
		return nil
	})
	if s.shadowHits.Load() <= hits {
		t.Fatal("the shadow never received the POST")
	}
}

// After the API answers a rollback, the mirror stops publishing envelopes
// for that launch.
func TestRollbackStopsMirroring(t *testing.T) {
	s := startStack(t)
	l := s.createLaunch(s.shadow.URL, 100)
	s.waitMirrorSees()

	nc, err := nats.Connect(s.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	envelopes, err := nc.SubscribeSync(stream.EnvelopeSubject(l.ID))
	if err != nil {
		t.Fatal(err)
	}
	var rolled launch.Launch
	s.apiOK("POST", "/v1/launches/"+l.ID+"/rollback", map[string]string{"reason": "e2e"}, 200, &rolled)
	if rolled.Status != "rolled_back" {
		t.Fatalf("status after rollback: %s", rolled.Status)
	}
	// Poll until a request is no longer sampled: the mirror has seen it.
	testenv.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		before := s.mirror.Stats().Sampled
		s.send("GET", "/api/users/2", nil)
		if s.mirror.Stats().Sampled != before {
			return fmt.Errorf("request still sampled after rollback")
		}
		return nil
	})
	s.drained()
	// Forget envelopes published before the rollback took effect.
	for {
		if _, err := envelopes.NextMsg(50 * time.Millisecond); err != nil {
			break
		}
	}
	sampled := s.mirror.Stats().Sampled
	for i := range 100 {
		s.send("GET", fmt.Sprintf("/api/users/%d", i+1), nil)
	}
	if got := s.mirror.Stats().Sampled; got != sampled {
		t.Fatalf("%d requests sampled after the rollback took effect", got-sampled)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := envelopes.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("envelope published after rollback: %d bytes", len(m.Data))
	}
	var got launch.Launch
	s.apiOK("GET", "/v1/launches/"+l.ID, nil, 200, &got)
	if got.Status != "rolled_back" {
		t.Fatalf("launch status %s", got.Status)
	}
}

// With the shadow down, clients still get every primary answer and the
// shadow failures are counted in the report.
func TestShadowDown(t *testing.T) {
	s := startStack(t)
	dead := "http://127.0.0.1:" + fmt.Sprint(testenv.FreePort(t)) // nothing listens there
	l := s.createLaunch(dead, 100)
	probes := s.waitMirrorSees()
	for i := range 100 {
		if code, _, _ := s.send("GET", fmt.Sprintf("/api/users/%d", i+1), nil); code != 200 {
			t.Fatalf("client got %d with the shadow down", code)
		}
	}
	s.drained()
	s.waitRows(l.ID, 100+probes)
	rep := s.report(l.ID)
	if rep.Totals.ShadowErrors != 100+probes {
		t.Fatalf("report counts %d shadow errors, want %d", rep.Totals.ShadowErrors, 100+probes)
	}
	if n := s.rows(l.ID, "shadow_error_kind = 'refused' AND shadow_status = 0 AND match = 0"); n != 100+probes {
		t.Fatalf("%d rows record a refused connection, want %d", n, 100+probes)
	}
}

// With NATS stopped the primary still answers every request; envelopes are
// dropped and counted; mirroring resumes by itself when NATS is back.
func TestNATSOutage(t *testing.T) {
	s := startStack(t)
	l := s.createLaunch(s.shadow.URL, 100)
	s.waitMirrorSees()
	s.drained()
	s.nats.Stop()
	for i := range 200 {
		code, _, body := s.send("GET", fmt.Sprintf("/api/users/%d", i+1), nil)
		if code != 200 || !strings.Contains(string(body), fmt.Sprintf(`"id":%d`, i+1)) {
			t.Fatalf("with NATS down the client got %d %q", code, body)
		}
	}
	// The tap holds the envelopes (within its budget) and retries them.
	if st := s.mirror.Stats(); st.DroppedTotal() != 0 || st.QueueDepth == 0 {
		t.Fatalf("while NATS was down: %+v, want the envelopes held, none dropped", st)
	}
	s.nats.Start()
	published := s.mirror.Stats().Published
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		s.send("GET", "/api/users/3", nil)
		if s.mirror.Stats().Published <= published {
			return fmt.Errorf("mirror has not resumed publishing: %+v", s.mirror.Stats())
		}
		return nil
	})
	st := s.drained()
	if st.DroppedTotal() != 0 {
		t.Errorf("envelopes dropped through a NATS restart: %+v", st)
	}
	// Everything sampled (before, during and after the outage) ends as one row.
	s.waitRows(l.ID, st.Published)
}

// An envelope published twice with the same id produces one row.
func TestDuplicateEnvelopeOneRow(t *testing.T) {
	s := startStack(t)
	l := s.createLaunch(s.shadow.URL, 0) // nothing sampled: only our envelope
	nc, err := nats.Connect(s.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	env := envelope.Envelope{V: envelope.Version, ID: envelope.NewID(), LaunchID: l.ID, TapID: "e2e", ReceivedAt: time.Now(),
		Request: envelope.Request{Method: "GET", Path: "/api/users/5"},
		Primary: envelope.Response{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}},
			Body: []byte(`{"id":5}`), BodySize: 8, LatencyUS: 100}}
	data := mustJSON(t, env)
	ctx := testenv.Context(t)
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := js.Publish(ctx, stream.EnvelopeSubject(l.ID), data, jetstream.WithMsgID(env.ID))
		return err
	})
	ack, err := js.Publish(ctx, stream.EnvelopeSubject(l.ID), data, jetstream.WithMsgID(env.ID))
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate {
		t.Fatal("second publish was not recognized as a duplicate")
	}
	s.waitRows(l.ID, 1)
	// Give the pipeline a chance to write a second row, then check again:
	// wait until the runner and comparator are idle.
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if st := s.runner.Stats(); st.InFlight != 0 || st.PairsPublished < 1 {
			return fmt.Errorf("runner busy: %+v", st)
		}
		return nil
	})
	if n := s.rows(l.ID, ""); n != 1 {
		t.Fatalf("%d rows for one envelope published twice", n)
	}
}

// Bad API input gets a 4xx with a message.
func TestBadAPIInput(t *testing.T) {
	s := startStack(t)
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "http://s", "sample_percent": 150}, 422},
		{"POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "/relative", "sample_percent": 10}, 422},
		{"POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "http://s", "methods": []string{"FETCH"}}, 422},
		{"POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "http://s", "compare": map[string]any{"ignore_paths": []string{"$.a["}}}, 422},
		{"POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "http://s", "secondary_url": "s:1"}, 422},
		{"GET", "/v1/launches/no-such-launch", nil, 404},
		{"POST", "/v1/launches/no-such-launch/rollback", nil, 404},
		{"GET", "/v1/launches/no-such-launch/report", nil, 404},
	} {
		code, body := s.api(c.method, c.path, c.body)
		if code != c.want || !strings.Contains(string(body), `"error":`) || len(body) < 20 {
			t.Errorf("%s %s: %d %s; want %d with an error message", c.method, c.path, code, body, c.want)
		}
	}
}
