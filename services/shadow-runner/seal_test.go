package runner

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
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

// A shadow and a secondary that echo the request's sealed credentials: the
// pair carries compare.Redacted in their place, as the tap's primary body
// does, and the clear values are nowhere in the pairs stream. Short cookie
// values are kept.
func TestEchoedCredentialsAreMaskedInThePair(t *testing.T) {
	const cookieVal, tokenVal = "user-cookie-0123456789", "user-token-abcdefgh"
	h := newHarness(t)
	keyFile, keys := testenv.SealKeys(t, "k1")
	sh := newShadow(t, testenv.EchoCredentials)
	sec := newShadow(t, testenv.EchoCredentials)
	l := h.createLaunchWithSecondary(sh.URL, sec.URL)
	cfg := h.testConfig("runner-echo")
	cfg.SealKeyFile = keyFile
	h.runReady(cfg)

	env := newEnvelope(l.ID, "GET", "/echo", "", nil)
	env.Request.Headers.Set("Authorization", "Bearer "+tokenVal)
	env.Request.Headers.Set("Cookie", "sid="+cookieVal+"; lang=en")
	keys.SealHeader(l.ID, env.Request.Headers, seal.DefaultHeaders)
	h.publishEnvelope(env)
	h.waitStreamMsgs(stream.PairsStream, 1)

	if seen := sh.requests()[0]; seen.Header.Get("Cookie") != "sid="+cookieVal+"; lang=en" {
		t.Errorf("the shadow got Cookie %q", seen.Header.Get("Cookie"))
	}
	p := h.pairs()[0]
	if p.Secondary == nil {
		t.Fatal("no secondary outcome")
	}
	for name, o := range map[string]*envelope.Outcome{"shadow": &p.Shadow, "secondary": p.Secondary} {
		var got struct {
			Cookies map[string]string `json:"cookies"`
			Auth    string            `json:"auth"`
		}
		if err := json.Unmarshal(o.Body, &got); err != nil {
			t.Fatalf("%s: body no longer JSON: %v: %s", name, err, o.Body)
		}
		if got.Cookies["sid"] != compare.Redacted || got.Auth != compare.Redacted || got.Cookies["lang"] != "en" {
			t.Errorf("%s: body %s", name, o.Body)
		}
		if v := o.Headers.Get("X-Debug-Session"); v != "session "+compare.Redacted {
			t.Errorf("%s: X-Debug-Session %q", name, v)
		}
		if o.BodySize != int64(len(o.Body)) {
			t.Errorf("%s: body size %d for %d bytes", name, o.BodySize, len(o.Body))
		}
	}
	for _, m := range h.rawMsgs(stream.PairsStream) {
		if strings.Contains(string(m.Data), cookieVal) || strings.Contains(string(m.Data), tokenVal) {
			t.Errorf("a clear value in the pairs stream: %s", m.Data)
		}
	}
}

// An envelope captured in clear (MIRROR_SEAL=off) is left to the
// comparator's echo masking: its primary body was not masked either.
func TestClearEnvelopesAreNotMasked(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, testenv.EchoCredentials)
	l := h.createLaunch(sh.URL)
	h.runReady(h.testConfig("runner-clear"))
	env := newEnvelope(l.ID, "GET", "/echo", "", nil)
	env.Request.Headers.Set("Cookie", "sid=user-cookie-0123456789")
	h.publishEnvelope(env)
	h.waitStreamMsgs(stream.PairsStream, 1)
	if p := h.pairs()[0]; !strings.Contains(string(p.Shadow.Body), "user-cookie-0123456789") {
		t.Errorf("clear capture masked: %s", p.Shadow.Body)
	}
}
