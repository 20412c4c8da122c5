package runner

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"testing"
)

func TestDirectPathChoice(t *testing.T) {
	d := newDirectPools(&Config{MaxIdleConnsPerHost: 4}, &http.Transport{})
	u := func(s string) *url.URL { v, _ := url.Parse(s); return v }
	for _, tc := range []struct {
		url, method string
		direct      bool
	}{
		{"http://shadow:8080/a", "GET", true},
		{"http://shadow/a", "HEAD", true},
		{"http://shadow/a", "POST", true},
		{"http://shadow/a", "DELETE", true},
		{"http://shadow/a", "CONNECT", false},
		{"https://shadow/a", "GET", false},
		{"http://user:pw@shadow/a", "GET", false},
	} {
		if got := d.pool(u(tc.url), tc.method) != nil; got != tc.direct {
			t.Errorf("%s %s: direct %v, want %v", tc.method, tc.url, got, tc.direct)
		}
	}
	if d.pool(u("http://shadow:8080/a"), "GET") != d.pool(u("http://shadow:8080/b"), "GET") {
		t.Error("two replays to one host got different pools")
	}
	if d.pool(u("http://shadow:8080/a"), "GET") == d.pool(u("http://shadow:8081/a"), "GET") {
		t.Error("two hosts share a pool")
	}
	off := newDirectPools(&Config{MaxIdleConnsPerHost: 4, MaxConnsPerHost: 8}, &http.Transport{})
	if off.pool(u("http://shadow/a"), "GET") != nil {
		t.Error("RUNNER_MAX_CONNS_PER_HOST set, and a replay took the direct path (pkg/h1 does not bound connections)")
	}
}

// TestDirectPathAnswersAsTheClient replays the same envelopes over both
// paths: the outcomes (status, headers, body, sizes) and what the shadow
// received must be the same.
func TestDirectPathAnswersAsTheClient(t *testing.T) {
	sh := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "gone")
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		_, _ = w.Write([]byte(`{"path":"` + r.URL.Path + `","q":"` + r.URL.RawQuery + `"}`))
	})
	cfg := DefaultConfig()
	cfg.NATSURL, cfg.AdminAddr, cfg.ID = "nats://127.0.0.1:1", "127.0.0.1:0", "direct-test"
	svc, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.direct.closeIdle()
	ctx := context.Background()
	for _, env := range []*envelope.Envelope{
		newEnvelope("l", "GET", "/items/1", "a=1&b=%20", nil),
		newEnvelope("l", "HEAD", "/items/1", "", nil),
		newEnvelope("l", "GET", "/missing", "", nil),
		newEnvelope("l", "POST", "/orders", "", []byte(`{"sku":"a-1","qty":2}`)),
		newEnvelope("l", "PUT", "/orders/1", "", nil),
		newEnvelope("l", "DELETE", "/orders/1", "", nil),
	} {
		env.Request.Headers.Set("X-Forwarded-For", "10.0.0.1")
		env.Request.Headers.Set("Connection", "X-Private")
		env.Request.Headers.Set("X-Private", "not replayed")
		direct := svc.replay(ctx, sh.URL, env)
		if svc.direct.pools[strings.TrimPrefix(sh.URL, "http://")] == nil {
			t.Fatalf("%s %s did not take the direct path", env.Request.Method, env.Request.Path)
		}
		svc.direct.off = true
		viaClient := svc.replay(ctx, sh.URL, env)
		svc.direct.off = false
		for _, o := range []*envelope.Outcome{&direct, &viaClient} {
			o.LatencyUS = 0
			o.Headers.Del("Date")
		}
		if !reflect.DeepEqual(direct, viaClient) {
			t.Errorf("%s %s: direct path %+v, http.Client %+v", env.Request.Method, env.Request.Path, direct, viaClient)
		}
	}
	seen := sh.requests()
	for i := 0; i+1 < len(seen); i += 2 {
		a, b := seen[i], seen[i+1]
		// Go's client adds a User-Agent the captured request did not have;
		// the direct path sends what was captured.
		b.Header.Del("User-Agent")
		if !reflect.DeepEqual(a, b) {
			t.Errorf("the shadow received %+v over the direct path, %+v through http.Client", a, b)
		}
		if a.Header.Get("X-Private") != "" || a.Header.Get(HeaderShadow) != "1" || a.Header.Get("X-Forwarded-For") != "10.0.0.1" {
			t.Errorf("direct path headers: %v", a.Header)
		}
	}
}
