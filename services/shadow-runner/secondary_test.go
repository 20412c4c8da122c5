package runner

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// TestSecondaryReplayedConcurrently checks that a launch with a secondary
// gets each envelope replayed to the shadow and to the secondary at the same
// time: each handler waits (up to a bound) for the other request to arrive
// before answering, and answers 200 only if it did, so replays made one
// after the other would give a 504 on the first target.
func TestSecondaryReplayedConcurrently(t *testing.T) {
	h := newHarness(t)
	shadowIn, secondaryIn := make(chan struct{}), make(chan struct{})
	barrier := func(mine, other chan struct{}, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			close(mine)
			w.Header().Set("Content-Type", "application/json")
			select {
			case <-other:
				_, _ = io.WriteString(w, body)
			case <-time.After(3 * time.Second):
				w.WriteHeader(http.StatusGatewayTimeout)
				_, _ = io.WriteString(w, `{"overlap":false}`)
			}
		}
	}
	sh := newShadow(t, barrier(shadowIn, secondaryIn, `{"from":"shadow"}`))
	sec := newShadow(t, barrier(secondaryIn, shadowIn, `{"from":"secondary"}`))
	l := h.createLaunchWithSecondary(sh.URL, sec.URL+"/v1")
	r := h.runReady(h.testConfig("runner-sec"))

	e := newEnvelope(l.ID, "POST", "/orders/7", "a=1", []byte(`{"qty":1}`))
	e.Request.Headers.Set("X-User-Id", "7")
	h.publishEnvelope(e)
	h.waitStreamMsgs(stream.PairsStream, 1)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)

	for name, target := range map[string]struct {
		s    *shadow
		path string
	}{"shadow": {sh, "/orders/7"}, "secondary": {sec, "/v1/orders/7"}} {
		reqs := target.s.requests()
		if len(reqs) != 1 {
			t.Fatalf("%s got %d requests, want 1", name, len(reqs))
		}
		got := reqs[0]
		if got.Method != "POST" || got.Path != target.path || got.Query != "a=1" || string(got.Body) != `{"qty":1}` {
			t.Errorf("%s got %s %s?%s %q", name, got.Method, got.Path, got.Query, got.Body)
		}
		if got.Header.Get(HeaderShadow) != "1" || got.Header.Get("X-User-Id") != "7" {
			t.Errorf("%s got headers %v, want the marker and the end-to-end headers", name, got.Header)
		}
	}

	ps := h.pairs()
	if len(ps) != 1 {
		t.Fatalf("%d pairs, want 1", len(ps))
	}
	p := ps[0]
	if p.Shadow.Status != http.StatusOK || string(p.Shadow.Body) != `{"from":"shadow"}` || p.Shadow.Error != "" {
		t.Errorf("shadow outcome: status %d body %q err %q (504 means the replays did not overlap)", p.Shadow.Status, p.Shadow.Body, p.Shadow.Error)
	}
	if p.Secondary == nil {
		t.Fatal("pair has no secondary outcome")
	}
	s2 := p.Secondary
	if s2.Status != http.StatusOK || string(s2.Body) != `{"from":"secondary"}` || s2.Error != "" || s2.ErrorKind != "" ||
		s2.BodySize != int64(len(`{"from":"secondary"}`)) || s2.Headers.Get("Content-Type") != "application/json" || s2.LatencyUS <= 0 {
		t.Errorf("secondary outcome: %+v (504 means the replays did not overlap)", s2)
	}

	st := r.Stats()
	if st.Replayed != 1 || st.SecondaryReplayed != 1 || st.PairsPublished != 1 || st.SecondaryFailures[envelope.ErrorRefused] != 0 {
		t.Errorf("stats: %+v", st)
	}
	testenv.WantMetrics(t, r.AdminAddr(),
		"darklaunch_shadow_runner_secondary_replays_total 1",
		"darklaunch_shadow_runner_secondary_latency_seconds_count 1",
		`darklaunch_shadow_runner_secondary_failures_total{kind="refused"} 0`,
	)
}

// TestSecondaryDown checks that a secondary nobody listens on is recorded
// in the pair as refused, counted, and leaves the shadow's outcome alone.
func TestSecondaryDown(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	refused := "http://127.0.0.1:" + fmt.Sprint(testenv.FreePort(t))
	l := h.createLaunchWithSecondary(sh.URL, refused)
	r := h.runReady(h.testConfig("runner-sec-down"))

	for range 2 {
		h.publishEnvelope(newEnvelope(l.ID, "GET", "/items", "", nil))
	}
	h.waitStreamMsgs(stream.PairsStream, 2)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)

	for _, p := range h.pairs() {
		if p.Shadow.Status != http.StatusOK || string(p.Shadow.Body) != `{"ok":true}` || p.Shadow.Error != "" {
			t.Errorf("shadow outcome affected by the secondary: %+v", p.Shadow)
		}
		if p.Secondary == nil {
			t.Fatal("pair has no secondary outcome")
		}
		if p.Secondary.ErrorKind != envelope.ErrorRefused || p.Secondary.Error == "" || p.Secondary.Status != 0 {
			t.Errorf("secondary outcome: %+v, want refused with status 0", p.Secondary)
		}
	}
	if n := len(sh.requests()); n != 2 {
		t.Errorf("shadow got %d requests, want 2", n)
	}
	st := r.Stats()
	if st.SecondaryReplayed != 2 || st.SecondaryFailures[envelope.ErrorRefused] != 2 || st.Replayed != 2 ||
		st.ShadowFailures[envelope.ErrorRefused] != 0 || st.PairsPublished != 2 {
		t.Errorf("stats: %+v", st)
	}
	if m := testenv.Metrics(t, r.AdminAddr()); !strings.Contains(m, `darklaunch_shadow_runner_secondary_failures_total{kind="refused"} 2`) {
		t.Errorf("metrics lack the secondary failures")
	}
}
