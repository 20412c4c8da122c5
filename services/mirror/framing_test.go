package mirror

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// smuggling are requests whose framing is ambiguous, with the reason the
// tap gives. Each is followed by a request a desynchronised peer would
// take for a second one.
var smuggling = []struct{ name, raw, reason string }{
	{"content-length and chunked",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
		"both Content-Length and Transfer-Encoding"},
	{"chunked and content-length", // the other order
		"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
		"both Content-Length and Transfer-Encoding"},
	{"tab before chunked", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n", `plain "chunked"`},
	{"chunked, identity", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", `plain "chunked"`},
	{"xchunked", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", `plain "chunked"`},
	{"chunked with a tab after", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", `plain "chunked"`},
	{"space before the colon", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", `plain "chunked"`},
	{"two transfer-encodings",
		"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"more than one Transfer-Encoding"},
	{"folded transfer-encoding", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", "folded"},
	{"transfer-encoding on HTTP/1.0", "POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.0"},
	{"two content-lengths", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", "more than one Content-Length"},
	{"signed content-length", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd", "invalid Content-Length"},
}

// goodThenBad is a well-framed request answered on a connection that then
// sends a smuggling attempt.
const goodThenBad = "GET /small HTTP/1.1\r\nHost: a\r\n\r\n"

// countingPrimary answers 200 to everything and counts what reaches it.
func countingPrimary(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// exchange writes raw on a new connection and reads until the tap closes
// it; with a first request, that one is sent and answered before.
func exchange(t *testing.T, addr, first, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	var got strings.Builder
	if first != "" {
		_, _ = io.WriteString(c, first)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(&got, "%s %s|", resp.Status, body)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(br)
	got.Write(b)
	return got.String()
}

func TestAmbiguousFramingIsRefusedNotForwardedNorSampled(t *testing.T) {
	e := newNATSEnv(t)
	primary, reached := countingPrimary(t)
	s, _ := startMirror(t, e, primary.URL, nil)
	l := e.createLaunch(t, 100, []string{"GET", "POST"}, nil)
	waitMirrored(t, s, l.ID)

	for i, tc := range smuggling {
		before := reached.Load()
		// Every other attempt comes on a connection that served a
		// request first.
		good := ""
		if i%2 == 1 {
			good = goodThenBad
		}
		got := exchange(t, s.Addr(), good, tc.raw)
		first, rest, _ := strings.Cut(got, "HTTP/1.1 400 Bad Request\r\n")
		if good != "" {
			if first != "200 OK GET /small 0|" || reached.Load() != before+1 {
				t.Errorf("%s: the good request was not served first: %q", tc.name, got)
			}
		} else if first != "" || reached.Load() != before {
			t.Errorf("%s: reached the primary (%d) or was answered otherwise: %q", tc.name, reached.Load()-before, got)
		}
		if rest == "" || !strings.Contains(rest, tc.reason) || !strings.Contains(rest, "Connection: close") {
			t.Errorf("%s: want a 400 naming %q, got %q", tc.name, tc.reason, got)
		}
		if strings.Contains(rest, "HTTP/1.1") || strings.Contains(rest, "admin") {
			t.Errorf("%s: a second request was answered: %q", tc.name, got)
		}
		if st := s.Stats(); st.FramingRefused != uint64(i+1) {
			t.Errorf("%s: refused %d, want %d", tc.name, st.FramingRefused, i+1)
		}
	}
	// Only the good GETs were sampled.
	for range len(smuggling) / 2 {
		if env, _ := e.next(t, 10*time.Second); env.Request.Path != "/small" {
			t.Errorf("sampled %s", env.Request.Path)
		}
	}
	e.expectNone(t)
}

func TestWellFramedRequestsKeepTheirConnection(t *testing.T) {
	e := newNATSEnv(t)
	primary, reached := countingPrimary(t)
	s, _ := startMirror(t, e, primary.URL, nil)

	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	long := strings.Repeat("x", 3000)
	reqs := []string{
		"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer-A: 1\r\n\r\n",
		"POST /length HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
		"GET /long?" + long + " HTTP/1.1\r\nHost: a\r\nX-Long: " + long + "\r\nCookie: " + long + "\r\n\r\n",
		"POST /upper HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING:  CHUNKED \r\n\r\n1\r\nx\r\n0\r\n\r\n",
		"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	}
	// Pipelined in one write, to check the guard follows the framing.
	if _, err := io.WriteString(c, strings.Join(reqs, "")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, want := range []string{"POST /chunked 8", "POST /length 11", "GET /long 0", "POST /upper 1", "GET /last 0"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer to %q: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
	if reached.Load() != int64(len(reqs)) || s.Stats().FramingRefused != 0 {
		t.Errorf("primary saw %d requests, refused %d", reached.Load(), s.Stats().FramingRefused)
	}
}

// TestFrameScanSplitReads feeds the guard byte by byte and in every split
// of two reads: the verdict does not depend on how the bytes arrive.
func TestFrameScanSplitReads(t *testing.T) {
	good := "GET /a HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n" +
		"POST /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /" + strings.Repeat("y", 300) + " HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
	cases := map[string]string{"good": good}
	for _, tc := range smuggling {
		cases[tc.name] = tc.raw
	}
	for name, raw := range cases {
		want := (&frame{start: true}).scan([]byte(raw))
		if (want == "") != (name == "good") {
			t.Errorf("%s: whole: %q", name, want)
		}
		var f frame
		f.start = true
		got := ""
		for i := 0; i < len(raw) && got == ""; i++ {
			got = f.scan([]byte{raw[i]})
		}
		if got != want {
			t.Errorf("%s byte by byte: %q, whole: %q", name, got, want)
		}
		for cut := range len(raw) {
			if got := scanSplit([]byte(raw), cut); got != want {
				t.Fatalf("%s cut at %d: %q, whole: %q", name, cut, got, want)
			}
		}
	}
}

// FuzzFrameScan: any bytes, however split, give the guard the same
// verdict, and it never panics.
func FuzzFrameScan(f *testing.F) {
	for _, tc := range smuggling {
		f.Add([]byte(tc.raw), uint16(7))
	}
	f.Add([]byte("POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\na;x=1\r\n0123456789\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n"), uint16(3))
	f.Fuzz(func(t *testing.T, raw []byte, cut uint16) {
		whole := (&frame{start: true}).scan(raw)
		at := int(cut) % (len(raw) + 1)
		if split := scanSplit(raw, at); split != whole {
			t.Fatalf("whole %q, split at %d %q", whole, at, split)
		}
	})
}

func TestFrameScanLongLines(t *testing.T) {
	for _, raw := range []string{
		"POST / HTTP/1.1\r\nTransfer-Encoding" + strings.Repeat(" ", 200) + ": chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: " + strings.Repeat("0", 200) + "1\r\n\r\nx",
	} {
		whole := (&frame{start: true}).scan([]byte(raw))
		for cut := range len(raw) {
			if got := scanSplit([]byte(raw), cut); got != whole {
				t.Fatalf("%.40q cut at %d: %q, whole %q", raw, cut, got, whole)
			}
		}
	}
}

// scanSplit is the guard's verdict on raw arriving in two reads, cut at at.
func scanSplit(raw []byte, at int) string {
	f := frame{start: true}
	if r := f.scan(raw[:at]); r != "" {
		return r
	}
	return f.scan(raw[at:])
}

// An upload cut off by MIRROR_BODY_READ_TIMEOUT on the direct path is the
// client's failure: a 408, not a 502 counted against the primary, which
// got no whole request; its sample is dropped as client_abort.
func TestUploadCutOffIsTheClients(t *testing.T) {
	e := newNATSEnv(t)
	primary, reached := countingPrimary(t)
	s, _ := startMirror(t, e, primary.URL, func(c *Config) { c.BodyReadTimeout = 300 * time.Millisecond })
	l := e.createLaunch(t, 100, []string{"GET", "POST"}, nil)
	waitMirrored(t, s, l.ID)

	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\nonly part of it"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "did not arrive in time") {
		t.Errorf("cut-off upload answered %d %q, want 408", resp.StatusCode, body)
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the primary's handler ran %d times for a request it never got whole", n)
	}
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		st := s.Stats()
		if st.ProxyErrors != 0 {
			return fmt.Errorf("counted as %d primary errors", st.ProxyErrors)
		}
		if st.Dropped[ReasonClientAbort] != 1 || st.Sampled != 1 {
			return fmt.Errorf("sampled %d, dropped %v; want the sample dropped as client_abort", st.Sampled, st.Dropped)
		}
		return nil
	})
	e.expectNone(t)
}
