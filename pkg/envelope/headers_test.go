package envelope

import (
	"net/http"
	"reflect"
	"testing"
)

func TestEndToEnd(t *testing.T) {
	in := http.Header{
		"Accept":            {"*/*"},
		"Cookie":            {"a=1", "b=2"},
		"Connection":        {"close, X-Private", " x-other "},
		"X-Private":         {"p"},
		"X-Other":           {"o"},
		"Keep-Alive":        {"timeout=5"},
		"transfer-encoding": {"chunked"}, // not canonical: still hop-by-hop
		"Te":                {"trailers"},
		"Content-Length":    {"12"},
		"X-Kept":            {"k1", "k2"},
	}
	got := EndToEnd(in, "content-length")
	want := http.Header{"Accept": {"*/*"}, "Cookie": {"a=1", "b=2"}, "X-Kept": {"k1", "k2"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EndToEnd = %v, want %v", got, want)
	}
	if len(in) != 10 || in.Get("X-Private") != "p" {
		t.Errorf("EndToEnd modified its input: %v", in)
	}
	got["Accept"] = []string{"text/html"}
	if in.Get("Accept") != "*/*" {
		t.Error("replacing a value of the result changed the input")
	}
	if got := EndToEnd(nil); got == nil || len(got) != 0 {
		t.Errorf("EndToEnd(nil) = %#v, want an empty map", got)
	}
}
