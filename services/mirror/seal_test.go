package mirror

import (
	"net/http"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/seal"
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
