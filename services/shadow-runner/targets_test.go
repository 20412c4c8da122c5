package runner

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// TestTargetPolicyAtDial: the runner applies the target policy when it
// dials. A name that resolves to a metadata address only when dialled (a
// DNS server of the test's own answers it, through the dialer's Resolver)
// is refused before any connection; so is a metadata URL found in the
// launch store, and, with RUNNER_ALLOWED_TARGETS, a host outside the list.
// Each refusal is a pair with error_kind "blocked" and a scrubbed error
// (no query string), counted, acked at once and never retried; a redirect
// to a metadata address is recorded, not followed.
func TestTargetPolicyAtDial(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, nil)
	su, _ := url.Parse(sh.URL)
	port := su.Port()
	redirect := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})

	cfg := h.testConfig("runner-targets")
	cfg.resolver = testenv.StartDNS(t, map[string]string{
		"rebind.shadows.test": "169.254.169.254", // looks harmless, resolves to metadata
		"good.shadows.test":   "127.0.0.1",
	})
	cfg.AllowedTargets = "*.shadows.test,127.0.0.1"

	rebind := h.createLaunch("http://rebind.shadows.test:" + port)
	good := h.createLaunch("http://good.shadows.test:" + port)
	outside := h.createLaunch("http://localhost:" + port)
	redirected := h.createLaunch(redirect.URL)
	stored := h.createLaunch(sh.URL)
	// A launch stored before the policy existed (Update does not validate).
	if _, err := h.store.Update(h.ctx, stored.ID, func(l *launch.Launch) error {
		l.ShadowURL = "http://[::ffff:169.254.169.254]:" + port
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := h.runReady(cfg)

	for _, l := range []*launch.Launch{rebind, good, outside, redirected, stored} {
		h.publishEnvelope(newEnvelope(l.ID, "GET", "/thing", "access_token=s3cr3t", nil))
	}
	h.waitStreamMsgs(stream.PairsStream, 5)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)

	want := map[string]struct {
		kind, why string
		status    int
	}{
		rebind.ID:     {envelope.ErrorBlocked, "dial tcp 169.254.169.254:" + port, 0},
		good.ID:       {"", "", 200},
		outside.ID:    {envelope.ErrorBlocked, "localhost is not in the allowed targets", 0},
		redirected.ID: {"", "", http.StatusFound},
		stored.ID:     {envelope.ErrorBlocked, "link-local or cloud metadata", 0},
	}
	for _, p := range h.pairs() {
		w := want[p.Envelope.LaunchID]
		if p.Shadow.ErrorKind != w.kind || p.Shadow.Status != w.status || !strings.Contains(p.Shadow.Error, w.why) {
			t.Errorf("launch %s: kind %q status %d error %q; want kind %q status %d error with %q",
				p.Envelope.LaunchID, p.Shadow.ErrorKind, p.Shadow.Status, p.Shadow.Error, w.kind, w.status, w.why)
		}
		if strings.Contains(p.Shadow.Error, "s3cr3t") {
			t.Errorf("error keeps the query: %q", p.Shadow.Error)
		}
		if p.Envelope.LaunchID == redirected.ID {
			if loc, _ := url.Parse(p.Shadow.Headers.Get("Location")); loc == nil || loc.Host != "169.254.169.254" {
				t.Errorf("redirect recorded with Location %q", p.Shadow.Headers.Get("Location"))
			}
		}
	}
	if n := len(sh.requests()); n != 1 {
		t.Errorf("shadow got %d requests, want 1 (only the allowed name)", n)
	}
	st := r.Stats()
	if st.ShadowFailures[envelope.ErrorBlocked] != 3 || st.Naks != 0 || st.DeadLettered != 0 {
		t.Errorf("stats %+v: want 3 blocked, no naks, no dead letters", st)
	}
	testenv.WantMetrics(t, r.AdminAddr(), `darklaunch_shadow_runner_shadow_failures_total{kind="blocked"} 3`)
}
