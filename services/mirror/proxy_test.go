package mirror

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

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
		case "/unread":
			// An answer without reading the upload.
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s host=%s length=%d te=%v body=%q\n%s\n", r.Method, r.RequestURI, r.Host, r.ContentLength, r.TransferEncoding, body, strings.Join(seen, "\n"))
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
	fetch := func(base, method, path string, hdr map[string]string, reqBody string) string {
		var rd io.Reader
		if reqBody != "" {
			rd = strings.NewReader(reqBody)
		}
		req, _ := http.NewRequest(method, base+path, rd)
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
		body         string
	}{
		{"GET", "/a/b%2Fc?x=1&y=%zz;z", map[string]string{"Accept": "application/json", "User-Agent": "ua/1"}, ""},
		{"GET", "/hop", map[string]string{"Connection": "keep-alive, X-Secret", "X-Secret": "s", "Keep-Alive": "300",
			"Proxy-Authorization": "Basic x", "Te": "trailers, deflate", "X-Forwarded-For": "1.2.3.4"}, ""},
		{"HEAD", "/a", nil, ""},
		{"OPTIONS", "/a", nil, ""},
		{"GET", "/hints", nil, ""},
		{"GET", "/trailers", nil, ""},
		{"GET", "/stream", nil, ""},
		{"GET", "/304", map[string]string{"If-None-Match": `"x"`}, ""},
		{"POST", "/orders", map[string]string{"Content-Type": "application/json"}, `{"sku":"a-1","qty":2}`},
		{"POST", "/empty", nil, ""},
		{"PUT", "/orders/1", nil, "replacement"},
		{"PATCH", "/orders/1", nil, ""},
		{"DELETE", "/orders/1", nil, ""},
		{"GET", "/with-body", nil, "odd but allowed"},
		{"POST", "/unread", nil, strings.Repeat("u", directBodyMax)},
	} {
		want := fetch(viaProxy.URL, tc.method, tc.path, tc.hdr, tc.body)
		got := fetch(viaForward.URL, tc.method, tc.path, tc.hdr, tc.body)
		if got != want {
			t.Errorf("%s %s:\nforward      %s\nReverseProxy %s", tc.method, tc.path, got, want)
		}
	}
	// What forward leaves to ReverseProxy: bodies over directBodyMax or of
	// unknown length, CONNECT.
	for _, r := range []*http.Request{
		httptest.NewRequest("POST", "/big", strings.NewReader(strings.Repeat("b", directBodyMax+1))),
		func() *http.Request {
			r := httptest.NewRequest("POST", "/chunked", strings.NewReader("x"))
			r.ContentLength, r.TransferEncoding = -1, []string{"chunked"}
			return r
		}(),
		httptest.NewRequest("CONNECT", "/", nil),
	} {
		if s.forward(httptest.NewRecorder(), r, nil) {
			t.Errorf("%s %s (length %d) was forwarded, want it left to ReverseProxy", r.Method, r.URL, r.ContentLength)
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
