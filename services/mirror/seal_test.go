package mirror

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/seal"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// secretRequest is a request with credentials in every sensitive header.
func secretRequest(t *testing.T, addr string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/small", nil)
	req.Header.Set("Authorization", "Bearer user-token")
	req.Header.Set("Cookie", "sid=user-cookie")
	req.Header.Set("X-Api-Key", "user-api-key")
	req.Header.Set("Accept", "application/json")
	if resp, _ := send(t, newClient(t), req); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// byLaunch reads n envelopes, keyed by launch id.
func byLaunch(t *testing.T, e *natsEnv, n int) map[string]*envelope.Envelope {
	t.Helper()
	out := map[string]*envelope.Envelope{}
	for range n {
		env, _ := e.next(t, 10*time.Second)
		out[env.LaunchID] = env
	}
	return out
}

func TestSensitiveValuesAreSealedAfterTheCapturePolicy(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	s, _ := startMirror(t, e, primary.URL, nil)
	plain := e.createLaunch(t, 100, nil, nil)
	policy := e.create(t, launch.Launch{SamplePercent: 100, Capture: launch.Capture{
		DropHeaders:    []string{"Cookie"},
		ReplaceHeaders: map[string]string{"Authorization": "Bearer shadow-token", "Accept": "text/plain"},
	}}, nil)
	waitMirrored(t, s, plain.ID, policy.ID)
	secretRequest(t, s.Addr())
	envs := byLaunch(t, e, 2)
	keys := s.protection.keys

	open := func(env *envelope.Envelope, h http.Header, name string) string {
		t.Helper()
		v := h.Get(name)
		if v == "" {
			return ""
		}
		if !seal.IsSealed(v) {
			t.Errorf("%s is in clear: %q", name, v)
			return v
		}
		clear, err := keys.Open(env.LaunchID, name, v)
		if err != nil {
			t.Error(err)
		}
		return clear
	}
	p := envs[plain.ID]
	if open(p, p.Request.Headers, "Authorization") != "Bearer user-token" || open(p, p.Request.Headers, "Cookie") != "sid=user-cookie" ||
		open(p, p.Request.Headers, "X-Api-Key") != "user-api-key" || open(p, p.Primary.Headers, "Set-Cookie") != "session=1; Path=/" ||
		p.Request.Headers.Get("Accept") != "application/json" {
		t.Errorf("launch without a policy: %v / %v", p.Request.Headers, p.Primary.Headers)
	}
	q := envs[policy.ID]
	if open(q, q.Request.Headers, "Authorization") != "Bearer shadow-token" || q.Request.Headers["Cookie"] != nil ||
		q.Request.Headers.Get("Accept") != "text/plain" || open(q, q.Request.Headers, "X-Api-Key") != "user-api-key" {
		t.Errorf("launch with a policy: %v", q.Request.Headers)
	}
}

func TestSensitiveHeadersWithoutKeyFile(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	for _, mode := range []string{SealAuto, SealOff} {
		s, stop := startMirror(t, e, primary.URL, func(c *Config) { c.SealKeyFile, c.Seal = "", mode })
		l := e.createLaunch(t, 100, nil, nil)
		waitMirrored(t, s, l.ID)
		secretRequest(t, s.Addr())
		env := byLaunch(t, e, 1)[l.ID]
		h := env.Request.Headers
		switch mode {
		case SealAuto: // left out
			if h["Authorization"] != nil || h["Cookie"] != nil || h["X-Api-Key"] != nil || env.Primary.Headers["Set-Cookie"] != nil ||
				h.Get("Accept") != "application/json" {
				t.Errorf("auto without key: %v / %v", h, env.Primary.Headers)
			}
		case SealOff: // in clear, as asked
			if h.Get("Authorization") != "Bearer user-token" || env.Primary.Headers.Get("Set-Cookie") != "session=1; Path=/" {
				t.Errorf("off: %v / %v", h, env.Primary.Headers)
			}
		}
		if _, err := e.store.Update(t.Context(), l.ID, func(l *launch.Launch) error { return l.Pause() }); err != nil {
			t.Fatal(err)
		}
		stop()
	}
}

// newEchoPrimary is a primary that echoes the request's credentials
// (testenv.EchoCredentials).
func newEchoPrimary(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(testenv.EchoCredentials))
	t.Cleanup(srv.Close)
	return srv
}

// A primary that echoes the request's credentials: the envelope's primary
// body and non-sensitive headers carry compare.Redacted in their place,
// with the key file (sealed), with a capture policy that drops or replaces
// them (the client's values are masked), and without a key file (left
// out). Short cookie values are kept.
func TestEchoedCredentialsAreMaskedInThePrimaryResponse(t *testing.T) {
	const cookieVal, tokenVal = "user-cookie-0123456789", "user-token-abcdefgh"
	e := newNATSEnv(t)
	primary := newEchoPrimary(t)
	check := func(name string, env *envelope.Envelope) {
		t.Helper()
		body := string(env.Primary.Body)
		for _, secret := range []string{cookieVal, tokenVal} {
			if strings.Contains(body, secret) || strings.Contains(fmt.Sprint(env.Primary.Headers), secret) {
				t.Errorf("%s: %q in clear in the primary response: %s %v", name, secret, body, env.Primary.Headers)
			}
		}
		var got struct {
			Cookies map[string]string `json:"cookies"`
			Auth    string            `json:"auth"`
		}
		if err := json.Unmarshal(env.Primary.Body, &got); err != nil {
			t.Fatalf("%s: body no longer JSON: %v: %s", name, err, body)
		}
		if got.Cookies["sid"] != compare.Redacted || got.Auth != compare.Redacted || got.Cookies["lang"] != "en" {
			t.Errorf("%s: body %s", name, body)
		}
		if h := env.Primary.Headers.Get("X-Debug-Session"); h != "session "+compare.Redacted {
			t.Errorf("%s: X-Debug-Session %q", name, h)
		}
		if env.Primary.BodySize != int64(len(env.Primary.Body)) {
			t.Errorf("%s: body size %d for %d bytes", name, env.Primary.BodySize, len(env.Primary.Body))
		}
	}
	send := func(addr string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/echo", nil)
		req.Header.Set("Authorization", "Bearer "+tokenVal)
		req.Header.Set("Cookie", "sid="+cookieVal+"; lang=en")
		resp, err := newClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The client itself gets the primary's answer untouched.
		if !strings.Contains(string(b), cookieVal) || !strings.Contains(string(b), tokenVal) {
			t.Fatalf("client's response changed: %s", b)
		}
	}

	s, stop := startMirror(t, e, primary.URL, nil)
	plain := e.createLaunch(t, 100, nil, nil)
	policy := e.create(t, launch.Launch{SamplePercent: 100, Capture: launch.Capture{
		DropHeaders:    []string{"Cookie"},
		ReplaceHeaders: map[string]string{"Authorization": "Bearer shadow-token-xyz"},
	}}, nil)
	waitMirrored(t, s, plain.ID, policy.ID)
	send(s.Addr())
	envs := byLaunch(t, e, 2)
	check("sealed", envs[plain.ID])
	check("sealed, capture policy", envs[policy.ID])
	for _, id := range []string{plain.ID, policy.ID} {
		if _, err := e.store.Update(t.Context(), id, func(l *launch.Launch) error { return l.Pause() }); err != nil {
			t.Fatal(err)
		}
	}
	stop()

	s, _ = startMirror(t, e, primary.URL, func(c *Config) { c.SealKeyFile, c.Seal = "", SealAuto })
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	send(s.Addr())
	check("left out", byLaunch(t, e, 1)[l.ID])
}
