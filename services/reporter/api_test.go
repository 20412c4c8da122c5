package reporter_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// TestAPI drives launch control through a real listener over real NATS KV,
// ClickHouse and Redis.
func TestAPI(t *testing.T) {
	e := startEnv(t, envOptions{cacheTTL: time.Minute})

	t.Run("lifecycle", func(t *testing.T) {
		e := *e
		e.t = t
		var l launch.Launch
		res := e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{
			"name": "  checkout v2 ", "service": "checkout", "shadow_url": "https://checkout-v2.internal/api",
			"sample_percent": 12.5, "methods": []string{"get", "POST", "GET"},
		}, &l)
		if l.ID == "" || l.Status != launch.StatusActive || l.Name != "checkout v2" || l.Service != "checkout" ||
			l.ShadowURL != "https://checkout-v2.internal/api" || l.SamplePercent != 12.5 ||
			!slices.Equal(l.Methods, []string{"GET", "POST"}) || l.Revision == 0 || l.CreatedAt.IsZero() || !l.UpdatedAt.Equal(l.CreatedAt) {
			t.Fatalf("created launch %+v", l)
		}
		if loc := res.Header.Get("Location"); loc != "/v1/launches/"+l.ID {
			t.Fatalf("Location %q", loc)
		}

		var got launch.Launch
		e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID, nil, &got)
		if got.ID != l.ID || got.Revision != l.Revision || got.Name != l.Name {
			t.Fatalf("get = %+v, want %+v", got, l)
		}
		var list api.LaunchList
		e.ok(http.StatusOK, "GET", "/v1/launches", nil, &list)
		if !slices.ContainsFunc(list.Launches, func(x *launch.Launch) bool { return x.ID == l.ID }) {
			t.Fatalf("list %+v lacks %s", list.Launches, l.ID)
		}

		var patched launch.Launch
		e.ok(http.StatusOK, "PATCH", "/v1/launches/"+l.ID, map[string]any{"sample_percent": 0}, &patched)
		if patched.SamplePercent != 0 || patched.Name != l.Name || patched.ShadowURL != l.ShadowURL ||
			!slices.Equal(patched.Methods, l.Methods) || patched.Revision <= l.Revision || !patched.UpdatedAt.After(l.UpdatedAt) {
			t.Fatalf("patched %+v from %+v: only sample_percent may change (to 0, not absent)", patched, l)
		}
		e.ok(http.StatusOK, "PATCH", "/v1/launches/"+l.ID, map[string]any{"methods": []string{}, "name": "checkout v3"}, &patched)
		if patched.Name != "checkout v3" || !slices.Equal(patched.Methods, launch.DefaultMethods) || patched.SamplePercent != 0 {
			t.Fatalf("patched %+v: want name checkout v3, default methods, percent kept at 0", patched)
		}

		for _, step := range []struct {
			action string
			want   launch.Status
		}{
			{"pause", launch.StatusPaused},
			{"pause", launch.StatusPaused}, // idempotent
			{"resume", launch.StatusActive},
			{"promote", launch.StatusPromoted},
		} {
			var after launch.Launch
			e.ok(http.StatusOK, "POST", "/v1/launches/"+l.ID+"/"+step.action, `{"reason": "test step `+step.action+`"}`, &after)
			if after.Status != step.want {
				t.Fatalf("%s: status %s, want %s", step.action, after.Status, step.want)
			}
			e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID, nil, &got)
			if got.Status != step.want {
				t.Fatalf("after %s the store says %s, want %s", step.action, got.Status, step.want)
			}
		}
		e.apiError(http.StatusConflict, "POST", "/v1/launches/"+l.ID+"/resume", nil, "promoted")
		e.apiError(http.StatusConflict, "POST", "/v1/launches/"+l.ID+"/rollback", nil, "promoted")
		e.apiError(http.StatusConflict, "PATCH", "/v1/launches/"+l.ID, map[string]any{"sample_percent": 50}, "promoted")

		r := e.create("to roll back", 5)
		var rolled launch.Launch
		e.ok(http.StatusOK, "POST", "/v1/launches/"+r.ID+"/rollback", nil, &rolled) // no body
		if rolled.Status != launch.StatusRolledBack {
			t.Fatalf("rollback: status %s", rolled.Status)
		}
		e.apiError(http.StatusConflict, "POST", "/v1/launches/"+r.ID+"/resume", nil, "rolled_back", "resume")
		e.apiError(http.StatusConflict, "POST", "/v1/launches/"+r.ID+"/promote", nil, "rolled_back")
		e.apiError(http.StatusConflict, "PATCH", "/v1/launches/"+r.ID, map[string]any{"name": "again"}, "rolled_back")
		e.ok(http.StatusOK, "GET", "/v1/launches/"+r.ID, nil, &got)
		if got.Status != launch.StatusRolledBack || got.Name != "to roll back" {
			t.Fatalf("after refused changes: %+v", got)
		}
	})

	t.Run("concurrent patches lose no update", func(t *testing.T) {
		e := *e
		e.t = t
		l := e.create("concurrent", 1)
		for round := range 5 {
			name := fmt.Sprintf("round %d", round)
			url := fmt.Sprintf("http://shadow-%d.internal", round)
			percent := float64(10 + round)
			methods := []string{"GET", []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS"}[round]}
			patches := []map[string]any{{"name": name}, {"shadow_url": url}, {"sample_percent": percent}, {"methods": methods}}
			var wg sync.WaitGroup
			codes := make([]int, len(patches))
			for i, p := range patches {
				wg.Go(func() {
					res, _ := e.do("PATCH", "/v1/launches/"+l.ID, p)
					codes[i] = res.StatusCode
				})
			}
			wg.Wait()
			for i, c := range codes {
				if c != http.StatusOK {
					t.Fatalf("round %d: patch %v answered %d", round, patches[i], c)
				}
			}
			var got launch.Launch
			e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID, nil, &got)
			if got.Name != name || got.ShadowURL != url || got.SamplePercent != percent || !slices.Equal(got.Methods, methods) {
				t.Fatalf("round %d: got %+v; an update was lost (want %s, %s, %v, %v)", round, got, name, url, percent, methods)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		e := *e
		e.t = t
		valid := func(change func(map[string]any)) map[string]any {
			b := map[string]any{"name": "bad", "shadow_url": "http://shadow:8080", "sample_percent": 10}
			change(b)
			return b
		}
		for _, c := range []struct {
			name string
			body any
			code int
			want []string
		}{
			{"percent 150", valid(func(b map[string]any) { b["sample_percent"] = 150 }), 422, []string{"sample_percent", "150"}},
			{"percent -1", valid(func(b map[string]any) { b["sample_percent"] = -1 }), 422, []string{"sample_percent", "-1"}},
			{"relative url", valid(func(b map[string]any) { b["shadow_url"] = "/foo" }), 422, []string{"shadow_url", "/foo"}},
			{"ftp url", valid(func(b map[string]any) { b["shadow_url"] = "ftp://x" }), 422, []string{"shadow_url", "ftp://x"}},
			{"unknown method", valid(func(b map[string]any) { b["methods"] = []string{"GET", "FETCH"} }), 422, []string{"FETCH"}},
			{"no name", valid(func(b map[string]any) { delete(b, "name") }), 422, []string{"name"}},
			{"malformed", `{"name": "x", `, 400, []string{"invalid JSON"}},
			{"not an object", `[1, 2]`, 400, []string{"invalid JSON"}},
			{"wrong type", `{"name": "x", "shadow_url": "http://s", "sample_percent": "50"}`, 400, []string{"sample_percent"}},
			{"unknown field", valid(func(b map[string]any) { b["colour"] = "blue" }), 400, []string{`unknown field "colour"`}},
			{"trailing data", `{"name": "x", "shadow_url": "http://s"} {"name": "y"}`, 400, []string{"single JSON object"}},
			{"empty", "", 400, []string{"empty"}},
			{"oversized", `{"name": "` + strings.Repeat("a", 2<<20) + `", "shadow_url": "http://s"}`, 413, []string{"1048576"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				e := e
				e.t = t
				e.apiError(c.code, "POST", "/v1/launches", c.body, c.want...)
			})
		}

		l := e.create("patch target", 10)
		e.apiError(422, "PATCH", "/v1/launches/"+l.ID, map[string]any{"sample_percent": 150}, "sample_percent")
		e.apiError(422, "PATCH", "/v1/launches/"+l.ID, map[string]any{"shadow_url": "/foo"}, "shadow_url")
		e.apiError(422, "PATCH", "/v1/launches/"+l.ID, map[string]any{"methods": []string{"FETCH"}}, "FETCH")
		e.apiError(400, "PATCH", "/v1/launches/"+l.ID, `{}`, "changes nothing")
		e.apiError(400, "PATCH", "/v1/launches/"+l.ID, map[string]any{"service": "other"}, `unknown field "service"`)
		e.apiError(400, "POST", "/v1/launches/"+l.ID+"/pause", `{"why": "x"}`, `unknown field "why"`)
		var got launch.Launch
		e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID, nil, &got)
		if got.SamplePercent != 10 || got.ShadowURL != "http://shadow.internal:8080" || got.Revision != l.Revision {
			t.Fatalf("refused patches changed the launch: %+v", got)
		}

		// A well-formed id nobody created, and ids that are not even valid keys.
		for _, id := range []string{"0197f0c2-7d3e-7abc-8def-0123456789ab", "nope", "a.b", "%27%20OR%201%3D1"} {
			e.apiError(404, "GET", "/v1/launches/"+id, nil, "not found")
			e.apiError(404, "GET", "/v1/launches/"+id+"/report", nil, "not found")
			e.apiError(404, "PATCH", "/v1/launches/"+id, map[string]any{"name": "x"}, "not found")
			for _, a := range []string{"pause", "resume", "promote", "rollback"} {
				e.apiError(404, "POST", "/v1/launches/"+id+"/"+a, nil, "not found")
			}
		}

		// The mux's own answers are JSON too.
		res, data := e.do("DELETE", "/v1/launches", nil)
		checkError(t, res, data, 405, "DELETE", "allowed")
		if allow := res.Header.Get("Allow"); !strings.Contains(allow, "POST") || !strings.Contains(allow, "GET") {
			t.Fatalf("405 Allow header %q", allow)
		}
		e.apiError(404, "GET", "/v1/nothing", nil, "no route")
		e.apiError(404, "POST", "/v1/launches/"+l.ID+"/explode", nil, "no route")

		// A browser page on another origin must not steer launches.
		res, data = e.do("POST", "/v1/launches/"+l.ID+"/rollback", `{}`, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")
		checkError(t, res, data, 403, "cross-origin")
		e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID, nil, &got)
		if got.Status != launch.StatusActive {
			t.Fatalf("cross-origin rollback went through: %s", got.Status)
		}
	})

	t.Run("compare rules and secondary", func(t *testing.T) {
		e := *e
		e.t = t
		var l launch.Launch
		e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{
			"name": "rules", "shadow_url": "http://shadow:8080", "secondary_url": "http://primary-2:8080", "sample_percent": 5,
			"compare": map[string]any{"ignore_paths": []string{"$..updated_at"}, "array_keys": map[string]string{"$.items": "id"},
				"numeric_tolerance": map[string]any{"absolute": 0.01}},
		}, &l)
		if l.SecondaryURL != "http://primary-2:8080" || !slices.Equal(l.Compare.IgnorePaths, []string{"$..updated_at"}) ||
			l.Compare.ArrayKeys["$.items"] != "id" || l.Compare.NumericTolerance == nil || l.Compare.NumericTolerance.Absolute != 0.01 {
			t.Fatalf("created %+v", l)
		}
		var got launch.Launch
		e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID, nil, &got)
		if got.SecondaryURL != l.SecondaryURL || !slices.Equal(got.Compare.IgnorePaths, l.Compare.IgnorePaths) {
			t.Fatalf("stored %+v", got)
		}

		// compare is replaced as a whole; other fields stay.
		var patched launch.Launch
		e.ok(http.StatusOK, "PATCH", "/v1/launches/"+l.ID, map[string]any{"compare": map[string]any{"ignore_paths": []string{"$.total", "$.currency"}}}, &patched)
		if !slices.Equal(patched.Compare.IgnorePaths, []string{"$.total", "$.currency"}) || patched.Compare.ArrayKeys != nil ||
			patched.Compare.NumericTolerance != nil || patched.SecondaryURL != l.SecondaryURL || patched.Revision <= l.Revision {
			t.Fatalf("patched %+v", patched)
		}
		e.ok(http.StatusOK, "PATCH", "/v1/launches/"+l.ID, map[string]any{"name": "renamed"}, &patched)
		if !slices.Equal(patched.Compare.IgnorePaths, []string{"$.total", "$.currency"}) {
			t.Fatalf("a PATCH without compare changed the rules: %+v", patched.Compare)
		}
		res, data := e.do("PATCH", "/v1/launches/"+l.ID, map[string]any{"compare": map[string]any{}, "secondary_url": ""})
		if res.StatusCode != 200 || !strings.Contains(string(data), `"compare":{}`) || strings.Contains(string(data), "secondary_url") {
			t.Fatalf("reset rules and secondary: %d %s", res.StatusCode, data)
		}

		e.apiError(422, "POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "http://s",
			"compare": map[string]any{"ignore_paths": []string{"$.a", "$.a["}}}, `invalid launch: compare.ignore_paths[1]: "$.a[" is not a valid path`)
		e.apiError(422, "POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "http://s", "secondary_url": "/relative"},
			"secondary_url", "/relative")
		e.apiError(422, "PATCH", "/v1/launches/"+l.ID, map[string]any{"compare": map[string]any{"numeric_tolerance": map[string]any{"relative": 2}}},
			"compare.numeric_tolerance.relative")
		e.apiError(422, "PATCH", "/v1/launches/"+l.ID, map[string]any{"compare": map[string]any{"array_keys": map[string]string{"items": "id"}}},
			`compare.array_keys["items"]`)
		e.apiError(422, "PATCH", "/v1/launches/"+l.ID, map[string]any{"secondary_url": "ftp://x"}, "secondary_url")
		e.apiError(400, "PATCH", "/v1/launches/"+l.ID, map[string]any{"compare": map[string]any{"ignore_pathz": []string{"$.a"}}}, `unknown field "ignore_pathz"`)
		e.apiError(400, "PATCH", "/v1/launches/"+l.ID, map[string]any{"compare": map[string]any{"ignore_paths": "$.a"}}, "compare.ignore_paths")
		var final launch.Launch
		e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID, nil, &final)
		if !final.Compare.IsZero() || final.SecondaryURL != "" || final.Name != "renamed" {
			t.Fatalf("refused patches changed the launch: %+v", final)
		}
	})

	t.Run("content type tolerated", func(t *testing.T) {
		// curl -d sends application/x-www-form-urlencoded; the body is JSON.
		res, data := e.do("POST", "/v1/launches", `{"name": "curl", "shadow_url": "http://s:1"}`, "Content-Type", "application/x-www-form-urlencoded")
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", res.StatusCode, data)
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		res, data := e.do("GET", "/", nil)
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET / = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
		page := string(data)
		for _, want := range []string{"<title>darklaunch reporter</title>", "/v1/launches", "/report", "setInterval(refresh", "/examples/", "raw_mismatches", "noise.suppressed",
			"/verdict", "rep.audit", "live_steps", "auto_rollback"} {
			if !strings.Contains(page, want) {
				t.Fatalf("dashboard lacks %q", want)
			}
		}
		// Self-contained: no external script, style or font.
		for _, bad := range []string{"<script src", "<link ", "@import", "url(", `src="http`, `href="http`, "fetch(\"http", "fetch('http", "fetch(`http"} {
			if strings.Contains(page, bad) {
				t.Fatalf("dashboard references an external asset: %q", bad)
			}
		}
		// The page must be exactly what the handler embeds, on / only.
		res, data = e.do("GET", "/index.html", nil)
		checkError(t, res, data, 404)
	})

	t.Run("metrics", func(t *testing.T) {
		res, data := request(t, "GET", e.admin+"/metrics", nil)
		if res.StatusCode != 200 {
			t.Fatalf("metrics %d", res.StatusCode)
		}
		for _, want := range []string{
			`darklaunch_reporter_http_requests_total{code="201",method="POST",route="POST /v1/launches"}`,
			`darklaunch_reporter_launch_changes_total{action="rollback"}`,
		} {
			if !strings.Contains(string(data), want) {
				t.Fatalf("metrics lack %s", want)
			}
		}
	})
}

// newUnreachableConfig is the configuration of a reporter whose NATS is
// js (stopped by the caller, or not) and whose ClickHouse does not listen.
func newUnreachableConfig(t testing.TB, js *testenv.JetStream) reporter.Config {
	cfg := reporter.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", CacheTTL: time.Second, QueryTimeout: 5 * time.Second}
	cfg.NATSURL = js.URL()
	cfg.ClickHouseAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // nothing listens there
	cfg.ClickHouseDatabase, cfg.ClickHouseUser = testDB, "default"
	cfg.RedisURL = testenv.StartRedis(t)
	cfg.TokensFile = writeTokens(t)
	return cfg
}

// TestDependenciesLate: New binds and serves before NATS and ClickHouse are
// reachable; the API answers 503 until they are, then works.
func TestDependenciesLate(t *testing.T) {
	js := testenv.StartJetStream(t)
	js.Stop()
	e := &env{t: t, js: js}
	e.svc = e.run(newUnreachableConfig(t, js))

	e.apiError(503, "GET", "/v1/launches", nil, "not connected")
	res, data := e.do("GET", "/healthz", nil)
	if res.StatusCode != 503 || !strings.Contains(string(data), `"nats"`) || !strings.Contains(string(data), `"clickhouse"`) {
		t.Fatalf("healthz before dependencies: %d %s", res.StatusCode, data)
	}

	js.Start()
	var l *launch.Launch
	testenv.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		res, data := e.do("GET", "/v1/launches", nil)
		if res.StatusCode != 200 {
			return fmt.Errorf("list %d: %s", res.StatusCode, data)
		}
		return nil
	})
	l = e.create("late", 1)
	e.apiError(503, "GET", "/v1/launches/"+l.ID+"/report", nil, "ClickHouse")
}
