package reporter_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// FuzzDecodeRequests sends arbitrary bodies to every route that decodes
// one (create, PATCH, pause, resume, rollback, promote) of a real
// reporter over real NATS, ClickHouse and Redis, with an admin token: the
// answer is never a 5xx (the body is the client's mistake or a success),
// and every error is the API's JSON error body. Findings go to
// testdata/fuzz/FuzzDecodeRequests and run with the seeds in every go test.
func FuzzDecodeRequests(f *testing.F) {
	e := startEnv(f, envOptions{quiet: true})
	h := e.svc.Handler()
	routes := []struct{ method, action string }{
		{"POST", "create"}, {"PATCH", ""}, {"POST", "pause"}, {"POST", "resume"}, {"POST", "rollback"}, {"POST", "promote"},
	}
	serve := func(method, path string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testTokens["admin"])
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	for _, seed := range []struct {
		route uint8
		body  string
	}{
		{0, `{"name": "x", "shadow_url": "http://s:1", "sample_percent": 10, "methods": ["GET"]}`},
		{0, `{"name": "x", "shadow_url": "http://s", "compare": {"ignore_paths": ["$..a", "$.b[*]"], "array_keys": {"$.items": "id"}}}`},
		{0, `{"name": "x", "shadow_url": "http://s", "ramp": {"steps": [{"percent": 1, "hold": "1m"}], "live_steps": [{"percent": 50, "hold": "1s"}]}, "gates": {"min_pairs": 5}}`},
		{0, `{"name": "x", "shadow_url": "http://s", "compare": {"ignore_paths": ["$['` + strings.Repeat("<", 2000) + `']"]}}`},
		{0, `{"name": "x", "shadow_url": "http://s", "sticky_key": "header:X-User", "include_paths": ["/api/**"], "max_rps": 1e300}`},
		{0, `[1, 2]`},
		{0, `{"name": "x"} {"name": "y"}`},
		{0, ``},
		{0, `{"name": "\ud800", "shadow_url": "http://s"}`},
		{1, `{"sample_percent": 50, "reason": "more"}`},
		{1, `{"ramp": {}, "gates": {}, "compare": {}, "secondary_url": ""}`},
		{1, `{"methods": ["GET", "GET", "FETCH"]}`},
		{1, `{}`},
		{1, `null`},
		{2, `{"reason": "x"}`},
		{3, ``},
		{4, `{"reason": 5}`},
		{5, `{"live_steps": [{"percent": 10, "hold": "1m"}, {"percent": 5, "hold": "x"}]}`},
		{5, `{"live_steps": []}`},
	} {
		f.Add(seed.route, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		path := "/v1/launches"
		if r.action != "create" {
			// A fresh launch for each input: a rollback or promotion of a
			// shared one would leave every later input a 409.
			w := serve("POST", path, []byte(`{"name": "fuzzed", "shadow_url": "http://s", "sample_percent": 1}`))
			var l launch.Launch
			if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &l) != nil {
				t.Fatalf("create the target launch: %d %s", w.Code, w.Body)
			}
			path += "/" + l.ID
			if r.action != "" {
				path += "/" + r.action
			}
		}
		w := serve(r.method, path, body)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, path, body, w.Code, w.Body)
		}
		if w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s %s %q: Content-Type %q", r.method, path, body, w.Header().Get("Content-Type"))
		}
		if w.Code >= 400 {
			var eb api.ErrorBody
			dec := json.NewDecoder(w.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&eb); err != nil || eb.Error == "" {
				t.Fatalf("%s %s %q: %d error body %q is not the API's JSON error (%v)", r.method, path, body, w.Code, w.Body, err)
			}
			return
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s %q: %d answer is not JSON: %s", r.method, path, body, w.Code, w.Body)
		}
	})
}
