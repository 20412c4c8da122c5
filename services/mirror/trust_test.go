package mirror

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// markerPrimary answers with what it saw of the markers and forwarding
// headers.
func markerPrimary(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "shadow=%q replay=%d xff=%q", r.Header.Get("X-Darklaunch-Shadow"), len(r.Header.Values("X-Darklaunch-Replay")), r.Header.Values("X-Forwarded-For"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestReplayMarkers(t *testing.T) {
	e := newNATSEnv(t)
	primary := markerPrimary(t)
	keyFile, keys := testenv.SealKeys(t, testKeyID)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.SealKeyFile = keyFile })
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	c := newClient(t)
	url := "http://" + s.Addr() + "/p?q=1"
	request := func(marker, proof string) string {
		req, _ := http.NewRequest("GET", url, nil)
		if marker != "" {
			req.Header.Set(headerShadow, marker)
		}
		if proof != "" {
			req.Header.Set(headerReplay, proof)
		}
		_, body := send(t, c, req)
		return string(body)
	}

	// A runner's replay: served with its markers, never sampled.
	if got := request("1", keys.Marker("GET", "/p?q=1", time.Now())); got != `shadow="1" replay=1 xff=[]` {
		t.Errorf("a replay reached the primary as %s", got)
	}
	if st := s.Stats(); st.Replays != 1 || st.Sampled != 0 {
		t.Errorf("after a replay: %+v", st)
	}
	e.expectNone(t)

	// A client's forgeries: the markers are removed and the request is
	// a client's, sampled as usual.
	_, otherKeys := testenv.SealKeys(t, testKeyID)
	forged := []struct{ marker, proof string }{
		{"1", ""},
		{"", keys.Marker("GET", "/p?q=1", time.Now())},
		{"1", keys.Marker("GET", "/other", time.Now())},                 // another request's proof
		{"1", keys.Marker("GET", "/p?q=1", time.Now().Add(-time.Hour))}, // an old one
		{"1", otherKeys.Marker("GET", "/p?q=1", time.Now())},            // another key
	}
	for i, f := range forged {
		if got := request(f.marker, f.proof); got != `shadow="" replay=0 xff=[]` {
			t.Errorf("forgery %d reached the primary as %s", i, got)
		}
		env, _ := e.next(t, 10*time.Second)
		if env.Request.Headers[headerShadow] != nil || env.Request.Headers[headerReplay] != nil {
			t.Errorf("forgery %d: the envelope keeps a marker: %v", i, env.Request.Headers)
		}
	}
	if st := s.Stats(); st.MarkersRemoved != uint64(len(forged)) || st.Sampled != uint64(len(forged)) {
		t.Errorf("after the forgeries: %+v", st)
	}
}

func TestReplayMarkersWithoutKeyFile(t *testing.T) {
	e := newNATSEnv(t)
	primary := markerPrimary(t)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.SealKeyFile = "" })
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/p", nil)
	req.Header.Set(headerShadow, "1")
	// A replay cannot be told from a client's request: neither is sampled
	// (no loop), and the marker never reaches the primary.
	if _, body := send(t, newClient(t), req); string(body) != `shadow="" replay=0 xff=[]` {
		t.Errorf("primary saw %s", body)
	}
	if st := s.Stats(); st.Sampled != 0 || st.MarkersRemoved != 1 {
		t.Errorf("stats %+v", st)
	}
	e.expectNone(t)
}

func TestForwardingHeadersOnlyFromTrustedProxies(t *testing.T) {
	e := newNATSEnv(t)
	primary := markerPrimary(t)
	s, _ := startMirror(t, e, primary.URL, nil) // trusts nobody
	l := e.createLaunch(t, 100, nil, nil)
	waitMirrored(t, s, l.ID)
	req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/p", nil)
	req.Header.Set("X-Forwarded-For", "10.9.9.9")
	req.Header.Set("Forwarded", "for=10.9.9.9")
	if _, body := send(t, newClient(t), req); string(body) != `shadow="" replay=0 xff=[]` {
		t.Errorf("primary saw %s", body)
	}
	env, _ := e.next(t, 10*time.Second)
	if env.Request.Headers["X-Forwarded-For"] != nil || env.Request.Headers["Forwarded"] != nil {
		t.Errorf("envelope keeps forwarding headers: %v", env.Request.Headers)
	}
	// MIRROR_X_FORWARDED then says only what the tap saw.
	s2, _ := startMirror(t, e, primary.URL, func(c *Config) { c.XForwarded = true })
	req.URL.Host = s2.Addr()
	if _, body := send(t, newClient(t), req); !strings.HasSuffix(string(body), `xff=["127.0.0.1"]`) {
		t.Errorf("with MIRROR_X_FORWARDED the primary saw %s", body)
	}
}

func TestGatewayErrorsTellNothingInternal(t *testing.T) {
	e := newNATSEnv(t)
	// Nothing listens on a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	s, _ := startMirror(t, e, "http://"+dead, nil)
	resp, body := get(t, newClient(t), "GET", "http://"+s.Addr()+"/x", nil)
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(string(body), "127.0.0.1") || strings.Contains(string(body), "dial") {
		t.Errorf("unreachable primary: %d %q", resp.StatusCode, body)
	}

	// A primary that never answers gets a 504 after the response-header
	// timeout.
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(stuck.Close)
	s2, _ := startMirror(t, e, stuck.URL, func(c *Config) { c.ResponseHeaderTimeout = 50 * time.Millisecond })
	resp, body = get(t, newClient(t), "GET", "http://"+s2.Addr()+"/x", nil)
	if resp.StatusCode != http.StatusGatewayTimeout || strings.Contains(string(body), strings.TrimPrefix(stuck.URL, "http://")) {
		t.Errorf("stuck primary: %d %q", resp.StatusCode, body)
	}
}

func TestSlowBodyIsCutOff(t *testing.T) {
	e := newNATSEnv(t)
	primary, reached := countingPrimary(t)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.BodyReadTimeout = 100 * time.Millisecond })
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	// Ten bytes announced, two sent, then nothing: the tap gives up on the
	// body and the connection, whatever the client does.
	_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("a body that never came: %d, want 408", resp.StatusCode)
		}
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the connection stayed open")
	}
	if reached.Load() != 0 && resp != nil && resp.StatusCode == 200 {
		t.Error("the primary answered a body it never got whole")
	}
}
