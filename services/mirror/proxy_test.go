package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// directPrimary is a primary for the direct path's tests: it counts the
// connections it accepted.
func directPrimary(t *testing.T, h http.HandlerFunc) (*httptest.Server, *primaryTransport, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	tr := newPrimaryTransport(u, Config{PrimaryURL: srv.URL}.withDefaults())
	t.Cleanup(tr.CloseIdleConnections)
	return srv, tr, &conns
}

func directGet(t *testing.T, tr *primaryTransport, method, rawURL string, ctx context.Context) (*http.Response, string, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if !tr.inline(req) {
		t.Fatalf("%s %s does not take the direct path", method, rawURL)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body), err
}

func TestDirectPathReusesConnections(t *testing.T) {
	srv, tr, conns := directPrimary(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Write([]byte(r.Method + " " + r.URL.RequestURI() + " " + r.Host + " ua=" + r.UserAgent()))
		}
	})
	ctx := context.Background()
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/a?x=1&y=%2F", "GET /a?x=1&y=%2F " + strings.TrimPrefix(srv.URL, "http://") + " ua="},
		{"GET", "/chunked", "part one, part two"},
		{"HEAD", "/a", ""},
		{"GET", "/empty", ""},
		{"OPTIONS", "/a", "OPTIONS /a " + strings.TrimPrefix(srv.URL, "http://") + " ua="},
	} {
		_, body, err := directGet(t, tr, tc.method, srv.URL+tc.path, ctx)
		if err != nil || body != tc.want {
			t.Errorf("%s %s: %q %v, want %q", tc.method, tc.path, body, err, tc.want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for sequential requests, want 1", n)
	}
}

func TestDirectPathRetriesAConnectionThePrimaryClosed(t *testing.T) {
	srv, tr, conns := directPrimary(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	ctx := context.Background()
	if _, body, err := directGet(t, tr, "GET", srv.URL+"/", ctx); err != nil || body != "ok" {
		t.Fatalf("%q %v", body, err)
	}
	srv.CloseClientConnections() // the pooled connection is now dead
	if _, body, err := directGet(t, tr, "GET", srv.URL+"/", ctx); err != nil || body != "ok" {
		t.Fatalf("after the primary closed the idle connection: %q %v", body, err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestDirectPathDoesNotReuseWhatItCannot(t *testing.T) {
	srv, tr, conns := directPrimary(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		w.Write([]byte(strings.Repeat("x", 64<<10)))
	})
	ctx := context.Background()
	// Connection: close, then a body closed before its end: neither
	// connection goes back to the pool.
	if _, _, err := directGet(t, tr, "GET", srv.URL+"/close", ctx); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/big", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 100))
	resp.Body.Close()
	if _, _, err := directGet(t, tr, "GET", srv.URL+"/big", ctx); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
	if tr.pool.Idle() != 1 {
		t.Errorf("%d idle connections, want 1", tr.pool.Idle())
	}
}

func TestDirectPathTimeoutsAndCancellation(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv, tr, _ := directPrimary(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	u, _ := url.Parse(srv.URL)
	slow := newPrimaryTransport(u, Config{PrimaryURL: srv.URL, ResponseHeaderTimeout: 50 * time.Millisecond}.withDefaults())
	defer slow.CloseIdleConnections()
	_, _, err := directGet(t, slow, "GET", srv.URL+"/slow", context.Background())
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("no answer within the header timeout: %v, want a timeout (504)", err)
	}
	<-arrived
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived // the request waits for its response
		cancel()
	}()
	if _, _, err := directGet(t, tr, "GET", srv.URL+"/slow", ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("client gone: %v, want context.Canceled", err)
	}
}

func TestDirectPathPassesEarlyHintsOn(t *testing.T) {
	srv, tr, _ := directPrimary(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Write([]byte("final"))
	})
	var hints []int
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, code)
			return nil
		},
	})
	resp, body, err := directGet(t, tr, "GET", srv.URL+"/", ctx)
	if err != nil || resp.StatusCode != 200 || body != "final" || len(hints) != 1 || hints[0] != 103 {
		t.Errorf("%v %q %v, hints %v", resp, body, err, hints)
	}
}

func TestOnlyPlainRequestsTakeTheDirectPath(t *testing.T) {
	u, _ := url.Parse("http://primary:8080")
	tr := newPrimaryTransport(u, Config{PrimaryURL: u.String()}.withDefaults())
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		direct bool
	}{
		{"GET", func() *http.Request { r, _ := http.NewRequest("GET", "http://primary:8080/a", nil); return r }, true},
		{"POST", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://primary:8080/a", strings.NewReader("x"))
			return r
		}, false},
		{"DELETE", func() *http.Request { r, _ := http.NewRequest("DELETE", "http://primary:8080/a", nil); return r }, false},
		{"https", func() *http.Request { r, _ := http.NewRequest("GET", "https://primary:8080/a", nil); return r }, false},
		{"other host", func() *http.Request { r, _ := http.NewRequest("GET", "http://other:8080/a", nil); return r }, false},
		{"upgrade", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://primary:8080/a", nil)
			r.Header.Set("Upgrade", "websocket")
			return r
		}, false},
		{"expect", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://primary:8080/a", nil)
			r.Header.Set("Expect", "100-continue")
			return r
		}, false},
	} {
		if got := tr.inline(tc.req()); got != tc.direct {
			t.Errorf("%s: direct %v, want %v", tc.name, got, tc.direct)
		}
	}
}

// The unsampled path (forward) answers every request as the ReverseProxy
// it replaces would: the primary sees the same request, the client gets
// the same status, headers, body and trailers.
func TestForwardAnswersAsReverseProxy(t *testing.T) {
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		var seen []string
		for k, vs := range r.Header {
			seen = append(seen, k+"="+strings.Join(vs, "|"))
		}
		slices.Sort(seen)
		h["Set-Cookie"] = []string{"a=1", "b=2"}
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "dropped")
		switch r.URL.Path {
		case "/hints":
			h.Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		case "/trailers":
			h.Set("Trailer", "X-Sum")
			w.Write([]byte("body"))
			h.Set("X-Sum", "42")
			h.Set(http.TrailerPrefix+"X-Late", "late")
			return
		case "/stream":
			h.Set("Content-Type", "text/event-stream")
			w.Write([]byte("data: 1\n\n"))
			w.(http.Flusher).Flush()
			w.Write([]byte("data: 2\n\n"))
			return
		case "/304":
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "%s %s host=%s\n%s\n", r.Method, r.RequestURI, r.Host, strings.Join(seen, "\n"))
	}))
	defer primary.Close()
	s, err := New(Config{PrimaryURL: primary.URL, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.ln.Close()
	s.admin.Close()
	defer s.transport.CloseIdleConnections()
	viaProxy := httptest.NewServer(s.plain)
	defer viaProxy.Close()
	viaForward := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.forward(w, r, nil) {
			t.Errorf("%s %s not forwarded", r.Method, r.URL)
		}
	}))
	defer viaForward.Close()

	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	fetch := func(base, method, path string, hdr map[string]string) string {
		req, _ := http.NewRequest(method, base+path, nil)
		req.Host = "shop.example"
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp.Header.Del("Date")
		return fmt.Sprintf("%d %v\n%s\ntrailer %v", resp.StatusCode, resp.Header, body, resp.Trailer)
	}
	for _, tc := range []struct {
		method, path string
		hdr          map[string]string
	}{
		{"GET", "/a/b%2Fc?x=1&y=%zz;z", map[string]string{"Accept": "application/json", "User-Agent": "ua/1"}},
		{"GET", "/hop", map[string]string{"Connection": "keep-alive, X-Secret", "X-Secret": "s", "Keep-Alive": "300",
			"Proxy-Authorization": "Basic x", "Te": "trailers, deflate", "X-Forwarded-For": "1.2.3.4"}},
		{"HEAD", "/a", nil},
		{"OPTIONS", "/a", nil},
		{"GET", "/hints", nil},
		{"GET", "/trailers", nil},
		{"GET", "/stream", nil},
		{"GET", "/304", map[string]string{"If-None-Match": `"x"`}},
	} {
		want := fetch(viaProxy.URL, tc.method, tc.path, tc.hdr)
		got := fetch(viaForward.URL, tc.method, tc.path, tc.hdr)
		if got != want {
			t.Errorf("%s %s:\nforward      %s\nReverseProxy %s", tc.method, tc.path, got, want)
		}
	}
	// An HTTP/1.0 request without Host, on the wire.
	raw := func(base string) string {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /old HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(c)
		_, body, _ := strings.Cut(string(out), "\r\n\r\n")
		return body
	}
	if got, want := raw(viaForward.URL), raw(viaProxy.URL); got != want || !strings.Contains(want, "host=127.0.0.1") {
		t.Errorf("HTTP/1.0 without Host:\nforward      %q\nReverseProxy %q", got, want)
	}
}
