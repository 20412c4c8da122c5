package h1

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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// server is an HTTP/1.1 server that counts the connections it accepted.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
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
	return srv, &conns
}

func pool(srv *httptest.Server, o Options) *Pool {
	return NewPool(strings.TrimPrefix(srv.URL, "http://"), (&net.Dialer{}).DialContext, o)
}

func get(t *testing.T, p *Pool, ctx context.Context, head *Head) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, head.Method, "http://"+head.Host+head.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Do(req, head, nil)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

func TestDoReusesConnections(t *testing.T) {
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Write([]byte(r.Method + " " + r.URL.RequestURI() + " " + r.Host + " ua=" + r.UserAgent() + " x=" + strings.Join(r.Header["X-Multi"], ",")))
		}
	})
	p := pool(srv, Options{MaxIdle: 4})
	defer p.CloseIdleConnections()
	for _, tc := range []struct{ method, path, query, want string }{
		{"GET", "/a", "x=1&y=%2F", "GET /a?x=1&y=%2F shadow.example ua= x=1,2"}, // no User-Agent added
		{"GET", "/chunked", "", "part one, part two"},
		{"HEAD", "/a", "", ""},
		{"GET", "/empty", "", ""},
		{"OPTIONS", "/a", "", "OPTIONS /a shadow.example ua= x=1,2"},
	} {
		_, body, err := get(t, p, context.Background(), &Head{Method: tc.method, Path: tc.path, RawQuery: tc.query, Host: "shadow.example",
			Header: http.Header{"X-Multi": {"1", "2"}}})
		if err != nil || body != tc.want {
			t.Errorf("%s %s: %q %v, want %q", tc.method, tc.path, body, err, tc.want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for sequential requests, want 1", n)
	}
	if n := p.Idle(); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

func TestHopByHopHeadersLeftOut(t *testing.T) {
	got := make(chan http.Header, 1)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { got <- r.Header })
	p := pool(srv, Options{MaxIdle: 1})
	defer p.CloseIdleConnections()
	h := http.Header{"Connection": {"X-Private"}, "X-Private": {"1"}, "Keep-Alive": {"5"}, "Te": {"trailers, gzip"}, "Accept": {"*/*"}}
	if _, _, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/", Host: "h", Header: h, Hop: true}); err != nil {
		t.Fatal(err)
	}
	rh := <-got
	if rh.Get("X-Private") != "" || rh.Get("Keep-Alive") != "" || rh.Get("Te") != "trailers" || rh.Get("Accept") != "*/*" {
		t.Errorf("headers received: %v", rh)
	}
}

func TestDoesNotReuseWhatItCannot(t *testing.T) {
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		w.Write([]byte(strings.Repeat("x", 64<<10)))
	})
	p := pool(srv, Options{MaxIdle: 4})
	defer p.CloseIdleConnections()
	// Connection: close, then a body closed before its end: neither
	// connection goes back to the pool.
	if _, _, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/close", Host: "h"}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/big", nil)
	resp, err := p.Do(req, &Head{Method: "GET", Path: "/big", Host: "h"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 100))
	resp.Body.Close()
	if _, _, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/big", Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
	if n := p.Idle(); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

func TestIdleConnectionClosedByTheServerIsRetried(t *testing.T) {
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	p := pool(srv, Options{MaxIdle: 4})
	defer p.CloseIdleConnections()
	if _, _, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/", Host: "h"}); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections() // the server drops the idle connection
	_, body, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/", Host: "h"})
	if err != nil || body != "ok" {
		t.Fatalf("after the server closed the idle connection: %q %v, want the request sent again", body, err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	p := pool(srv, Options{MaxIdle: 4, IdleTimeout: time.Nanosecond})
	defer p.CloseIdleConnections()
	for range 2 {
		if _, _, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/", Host: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: an idle one past IdleTimeout is not reused", n)
	}
}

func TestHeaderTimeoutAndCancellation(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
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
	p := pool(srv, Options{MaxIdle: 4, ResponseHeaderTimeout: 50 * time.Millisecond})
	defer p.CloseIdleConnections()
	_, _, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/slow", Host: "h"})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("no answer within the header timeout: %v, want a timeout", err)
	}
	<-arrived
	p = pool(srv, Options{MaxIdle: 4})
	defer p.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	if _, _, err := get(t, p, ctx, &Head{Method: "GET", Path: "/slow", Host: "h"}); !errors.Is(err, context.Canceled) {
		t.Errorf("context cancelled: %v, want context.Canceled", err)
	}
}

func TestEarlyHintsGoToTheTrace(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Write([]byte("final"))
	})
	p := pool(srv, Options{MaxIdle: 1})
	defer p.CloseIdleConnections()
	var hints []int
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			hints = append(hints, code)
			return nil
		},
	})
	resp, body, err := get(t, p, ctx, &Head{Method: "GET", Path: "/", Host: "h"})
	if err != nil || resp.StatusCode != 200 || body != "final" || len(hints) != 1 || hints[0] != 103 {
		t.Errorf("%v %q %v, hints %v", resp, body, err, hints)
	}
}

func TestWriteValueNeutralisesLineBreaks(t *testing.T) {
	got := make(chan string, 1)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get("X-Value") })
	p := pool(srv, Options{MaxIdle: 1})
	defer p.CloseIdleConnections()
	if _, _, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/", Host: "h",
		Header: http.Header{"X-Value": {"a\r\nX-Injected: 1"}}}); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "a  X-Injected: 1" {
		t.Errorf("value received %q, want the line break turned into spaces", v)
	}
}

func TestBodiesAndWhatIsSentTwice(t *testing.T) {
	type seen struct {
		method, body string
		length       int64
		te           []string
	}
	got := make(chan seen, 10)
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, string(b), r.ContentLength, r.TransferEncoding}
		w.Write([]byte("ok"))
	})
	p := pool(srv, Options{MaxIdle: 4})
	defer p.CloseIdleConnections()
	for _, tc := range []struct {
		method, body string
		length       int64
	}{
		{"POST", `{"a":1}`, 7},
		{"PUT", "", 0},    // Content-Length: 0, as http.Request.Write says it
		{"DELETE", "", 0}, // no length: none is needed
		{"PATCH", "x", 1},
	} {
		head := &Head{Method: tc.method, Path: "/", Host: "h"}
		if tc.body != "" {
			head.Body = []byte(tc.body)
		}
		if _, body, err := get(t, p, context.Background(), head); err != nil || body != "ok" {
			t.Fatalf("%s: %q %v", tc.method, body, err)
		}
		if s := <-got; s.method != tc.method || s.body != tc.body || s.length != tc.length || len(s.te) != 0 {
			t.Errorf("%s: the server saw %+v, want body %q with length %d", tc.method, s, tc.body, tc.length)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	// The server closes the idle connection: a POST finds it dead before
	// sending (it may not be sent twice) and goes out on a new one, once.
	srv.CloseClientConnections()
	testenv.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if p.idle[0].alive() {
			return errors.New("the closed connection still looks alive")
		}
		return nil
	})
	if _, body, err := get(t, p, context.Background(), &Head{Method: "POST", Path: "/", Host: "h", Body: []byte("once")}); err != nil || body != "ok" {
		t.Fatalf("POST after the server closed the idle connection: %q %v", body, err)
	}
	if s := <-got; s.body != "once" {
		t.Errorf("the server saw %+v", s)
	}
	select {
	case s := <-got:
		t.Errorf("the POST reached the server twice: %+v", s)
	default:
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestAliveOnAnOpenConnection(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	p := pool(srv, Options{MaxIdle: 1})
	defer p.CloseIdleConnections()
	if _, _, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/", Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if p.Idle() != 1 || !p.idle[0].alive() {
		t.Error("an open idle connection does not look alive")
	}
}

func TestStreamedBody(t *testing.T) {
	got := make(chan string, 4)
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return // the request cut short
		}
		got <- fmt.Sprintf("%s %d %s", r.Method, r.ContentLength, b)
		w.Write([]byte("ok"))
	})
	p := pool(srv, Options{MaxIdle: 4})
	defer p.CloseIdleConnections()
	body := strings.Repeat("s", 10000)
	if _, resp, err := get(t, p, context.Background(), &Head{Method: "PUT", Path: "/", Host: "h",
		Stream: strings.NewReader(body), StreamLength: int64(len(body))}); err != nil || resp != "ok" {
		t.Fatalf("%q %v", resp, err)
	}
	if s := <-got; s != "PUT 10000 "+body {
		t.Errorf("the server saw %.40q", s)
	}
	// A stream shorter than its length: the caller's failure, and the
	// connection (with a request cut short on it) is not reused.
	_, _, err := get(t, p, context.Background(), &Head{Method: "POST", Path: "/", Host: "h",
		Stream: strings.NewReader("short"), StreamLength: 100})
	if !errors.Is(err, ErrRequestBody) {
		t.Errorf("short stream: %v, want ErrRequestBody", err)
	}
	if n := p.Idle(); n != 0 {
		t.Errorf("%d idle connections after a request cut short, want 0", n)
	}
	if _, resp, err := get(t, p, context.Background(), &Head{Method: "GET", Path: "/", Host: "h"}); err != nil || resp != "ok" {
		t.Fatalf("after a cut request: %q %v", resp, err)
	}
	if s := <-got; s != "GET 0 " {
		t.Errorf("the server saw %q", s)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}
