package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

func TestJoinURL(t *testing.T) {
	cases := []struct {
		shadow, path, query, want string
	}{
		{"http://s:8080", "/a/b", "", "http://s:8080/a/b"},
		{"http://s:8080/", "/a/b", "x=1", "http://s:8080/a/b?x=1"},
		{"http://s/base", "/a", "", "http://s/base/a"},
		{"http://s/base/", "/a", "", "http://s/base/a"},
		{"http://s/base/", "/", "", "http://s/base/"},
		{"http://s/base", "/", "q", "http://s/base/?q"},
		{"https://s/v2/api", "/orders/42", "expand=items", "https://s/v2/api/orders/42?expand=items"},
		// Escaped paths are kept as the client sent them.
		{"http://s/base", "/a%2Fb/c%20d", "", "http://s/base/a%2Fb/c%20d"},
		{"http://s/sp%20ace/", "/x", "", "http://s/sp%20ace/x"},
		// A path that is not valid escaped text is escaped.
		{"http://s", "/100%", "", "http://s/100%25"},
		{"http://s", "/a b", "", "http://s/a%20b"},
		// The request path never loses its double slash, nor gains one.
		{"http://s/base/", "//x", "", "http://s/base//x"},
		// Query kept raw; user info and fragments never sent.
		{"http://u:p@s/base#frag", "/a", "b=%2F&c", "http://s/base/a?b=%2F&c"},
	}
	for _, c := range cases {
		u, err := JoinURL(c.shadow, c.path, c.query)
		if err != nil {
			t.Errorf("JoinURL(%q, %q, %q): %v", c.shadow, c.path, c.query, err)
			continue
		}
		if got := u.String(); got != c.want {
			t.Errorf("JoinURL(%q, %q, %q) = %q, want %q", c.shadow, c.path, c.query, got, c.want)
		}
	}
	for _, bad := range []string{"", "/relative", "ftp://s/x", "http://", "http://s/%zz"} {
		if u, err := JoinURL(bad, "/a", ""); err == nil {
			t.Errorf("JoinURL(%q) = %v, want an error", bad, u)
		}
	}
}

func TestShadowHeaders(t *testing.T) {
	in := http.Header{
		"Accept":         {"*/*"},
		"Cookie":         {"a=1", "b=2"},
		"Connection":     {"close, X-Private"},
		"X-Private":      {"p"},
		"Keep-Alive":     {"timeout=5"},
		"Content-Length": {"12"},
		"Host":           {"primary"},
		"Expect":         {"100-continue"},
		HeaderShadow:     {"0"},
	}
	got := ShadowHeaders(in)
	want := http.Header{"Accept": {"*/*"}, "Cookie": {"a=1", "b=2"}, HeaderShadow: {"1"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ShadowHeaders = %v, want %v", got, want)
	}
	if in.Get("X-Private") != "p" || in.Get(HeaderShadow) != "0" {
		t.Errorf("ShadowHeaders modified its input: %v", in)
	}
	if got := ShadowHeaders(nil); got.Get(HeaderShadow) != "1" || len(got) != 1 {
		t.Errorf("ShadowHeaders(nil) = %v", got)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyError(t *testing.T) {
	wrap := func(err error) error { return &url.Error{Op: "Get", URL: "http://s/", Err: err} }
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{wrap(context.DeadlineExceeded), envelope.ErrorTimeout},
		{wrap(&net.OpError{Op: "read", Err: timeoutErr{}}), envelope.ErrorTimeout},
		{wrap(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), envelope.ErrorRefused},
		{wrap(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), envelope.ErrorReset},
		{wrap(io.EOF), envelope.ErrorReset},
		{fmt.Errorf("body: %w", io.ErrUnexpectedEOF), envelope.ErrorReset},
		{wrap(errors.New("tls: bad certificate")), envelope.ErrorOther},
		{wrap(&net.DNSError{Err: "no such host", Name: "nowhere"}), envelope.ErrorOther},
	}
	for _, c := range cases {
		if got := ClassifyError(c.err); got != c.want {
			t.Errorf("ClassifyError(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
