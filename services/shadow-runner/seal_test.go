package runner

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/seal"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

func TestSealedValuesAreOpenedForTheReplayOnly(t *testing.T) {
	h := newHarness(t)
	keyFile, keys := testenv.SealKeys(t, "k1")
	sh := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Set-Cookie", "shadow-session=s3cr3t")
		_, _ = w.Write([]byte("shadow"))
	})
	l := h.createLaunch(sh.URL)
	cfg := h.testConfig("runner-seal")
	cfg.SealKeyFile = keyFile
	r := h.runReady(cfg)

	env := newEnvelope(l.ID, "GET", "/a", "b=1", nil)
	env.Request.Headers.Set("Authorization", "Bearer user-token")
	keys.SealHeader(l.ID, env.Request.Headers, seal.DefaultHeaders)
	sealed := env.Request.Headers.Get("Authorization")
	h.publishEnvelope(env)
	h.waitStreamMsgs(stream.PairsStream, 1)

	seen := sh.requests()[0]
	if seen.Header.Get("Authorization") != "Bearer user-token" {
		t.Errorf("the shadow got Authorization %q", seen.Header.Get("Authorization"))
	}
	// The replay proves itself to a tap.
	if err := keys.VerifyMarker(seen.Header.Get(seal.HeaderReplay), "GET", "/a?b=1", time.Now()); err != nil || seen.Header.Get(HeaderShadow) != "1" {
		t.Errorf("replay markers %v: %v", seen.Header, err)
	}
	p := h.pairs()[0]
	if p.Envelope.Request.Headers.Get("Authorization") != sealed {
		t.Errorf("the pair's envelope is not the sealed one: %v", p.Envelope.Request.Headers)
	}
	cookie := p.Shadow.Headers.Get("Set-Cookie")
	if v, err := keys.Open(l.ID, "Set-Cookie", cookie); err != nil || v != "shadow-session=s3cr3t" {
		t.Errorf("the shadow's Set-Cookie in the pair: %q (%q, %v)", cookie, v, err)
	}
	for _, m := range h.rawMsgs(stream.PairsStream) {
		if strings.Contains(string(m.Data), "user-token") || strings.Contains(string(m.Data), "s3cr3t") {
			t.Errorf("a clear value in the pairs stream: %s", m.Data)
		}
	}
	if st := r.Stats(); st.DeadLettered != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestUnsealableEnvelopesAreDeadLettered(t *testing.T) {
	h := newHarness(t)
	keyFile, _ := testenv.SealKeys(t, "k1")
	_, rotatedAway := testenv.SealKeys(t, "k0")
	sh := newShadow(t, nil)
	l := h.createLaunch(sh.URL)

	// A runner with k1 only, and one with no key file at all.
	withKey := h.testConfig("runner-k1")
	withKey.SealKeyFile = keyFile
	r := h.runReady(withKey)
	env := newEnvelope(l.ID, "GET", "/", "", nil)
	env.Request.Headers.Set("Cookie", rotatedAway.Seal(l.ID, "Cookie", "sid=1"))
	h.publishEnvelope(env)
	h.waitStreamMsgs(stream.DeadLetterStream, 1)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}

	h.runReady(h.testConfig("runner-nokey"))
	env2 := newEnvelope(l.ID, "GET", "/", "", nil)
	env2.Request.Headers.Set("Cookie", rotatedAway.Seal(l.ID, "Cookie", "sid=1"))
	h.publishEnvelope(env2)
	h.waitStreamMsgs(stream.DeadLetterStream, 2)

	want := []string{`sealed with key id "k0"`, "no key file"}
	for i, m := range h.rawMsgs(stream.DeadLetterStream) {
		reason := m.Header.Get(stream.HeaderReason)
		if !strings.Contains(reason, want[i]) || strings.Contains(reason, "sid=1") {
			t.Errorf("dead letter %d: reason %q, want it to mention %q", i, reason, want[i])
		}
	}
	if len(sh.requests()) != 0 {
		t.Error("an unsealable envelope reached the shadow")
	}
}
