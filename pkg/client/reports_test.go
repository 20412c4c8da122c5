package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

func TestClassExamples(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fp := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		if fp == "broken" {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"clickhouse down"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(api.ExampleList{LaunchID: "l1", Fingerprint: fp,
			Examples: []api.Example{{EnvelopeID: "e-" + fp}, {EnvelopeID: "second"}}})
	}))
	defer srv.Close()
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r := &api.Report{Launch: &launch.Launch{ID: "l1"}, Stats: api.Stats{Classes: []api.DiffClass{
		{Fingerprint: "a", Examples: []string{"x"}},
		{Fingerprint: "none"}, // no stored example: not asked for
		{Fingerprint: "broken", Examples: []string{"y"}},
	}}}
	var warned []string
	got := c.ClassExamples(context.Background(), r, func(fp string, err error) { warned = append(warned, fp+": "+err.Error()) })
	if len(got) != 1 || got["a"] == nil || got["a"].EnvelopeID != "e-a" {
		t.Errorf("examples %+v, want the first example of class a only", got)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "broken") || !strings.Contains(warned[0], "clickhouse down") {
		t.Errorf("warnings %q, want one for class broken with its error", warned)
	}
	if got := c.ClassExamples(context.Background(), &api.Report{}, nil); len(got) != 0 {
		t.Errorf("a report without a launch: %v", got)
	}
}
