package reporter_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// pairs inserts n comparison rows for a launch received at ts: clean ones
// (same status, body, latency 1 ms vs 1.1 ms on alternate rows), or with
// the given change applied.
func (e *env) pairs(launchID, prefix string, n int, ts time.Time, change func(i int, r *analytics.Row)) {
	e.t.Helper()
	rows := make([]analytics.Row, n)
	for i := range rows {
		r := analytics.Row{LaunchID: launchID, EnvelopeID: fmt.Sprintf("%s-%s-%05d", launchID, prefix, i), TS: ts, Method: "GET",
			Route: "/api/users/{id}", Path: fmt.Sprintf("/api/users/%d", i), PrimaryStatus: 200, ShadowStatus: 200,
			PrimaryLatencyUS: 1000, ShadowLatencyUS: 1000 + 100*uint64(i%2) - 50, Match: true, StatusMatch: true, ContentTypeMatch: true, BodyMatch: true}
		if change != nil {
			change(i, &r)
		}
		rows[i] = r
	}
	if err := analytics.Insert(testenv.Context(e.t), e.ch, testDB, rows); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) verdict(id string) (api.Verdict, string) {
	e.t.Helper()
	var v api.Verdict
	res := e.ok(http.StatusOK, "GET", "/v1/launches/"+id+"/verdict", nil, &v)
	return v, res.Header.Get("X-Darklaunch-Cache")
}

func check(t *testing.T, v api.Verdict, name string) api.Check {
	t.Helper()
	c, ok := v.Check(name)
	if !ok {
		t.Fatalf("verdict has no check %s: %+v", name, v.Checks)
	}
	return c
}

// waitAudit polls a launch's report until its audit log holds n entries
// (they are written in the background) and returns them, newest first.
func (e *env) waitAudit(id string, n int) []api.AuditEntry {
	e.t.Helper()
	var rep api.Report
	testenv.CheckFor(e.t, 10*time.Second, 100*time.Millisecond, func() error {
		e.ok(http.StatusOK, "GET", "/v1/launches/"+id+"/report", nil, &rep)
		if len(rep.Audit) != n {
			return fmt.Errorf("audit %+v", rep.Audit)
		}
		return nil
	})
	return rep.Audit
}

// fresh zeroes l for a JSON answer: decoding into a used struct keeps the
// fields the answer omits (ramp when it is removed).
func fresh(l *launch.Launch) *launch.Launch {
	*l = launch.Launch{}
	return l
}

// TestRolloutAPI: the launch fields of sampling, ramps and gates through
// create and PATCH, the verdict over real ClickHouse rows, promotion with
// live steps, rollback, and the audit log in the report.
func TestRolloutAPI(t *testing.T) {
	e := startEnv(t, envOptions{cacheTTL: 500 * time.Millisecond})

	t.Run("fields", func(t *testing.T) {
		e := *e
		e.t = t
		var l launch.Launch
		before := time.Now().UTC()
		e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{
			"name": "ramped", "shadow_url": "http://shadow:8080", "sticky_key": "header:x-user-id",
			"include_paths": []string{"/api/**"}, "exclude_paths": []string{"/api/admin/**"}, "max_rps": 250,
			"ramp": map[string]any{"steps": []map[string]any{{"percent": 1, "hold": "5m"}, {"percent": 10, "hold": "1h30m"}, {"percent": 100, "hold": "0s"}},
				"auto_promote": true, "auto_rollback": true, "live_steps": []map[string]any{{"percent": 20, "hold": "10m"}}},
			"gates":  map[string]any{"min_pairs": 50, "max_latency_ratio": map[string]any{"p99": 3}},
			"reason": "deploy 1234",
		}, &l)
		if l.StickyKey != "header:x-user-id" || !slices.Equal(l.IncludePaths, []string{"/api/**"}) || !slices.Equal(l.ExcludePaths, []string{"/api/admin/**"}) ||
			l.MaxRPS != 250 || l.Ramp == nil || len(l.Ramp.Steps) != 3 || l.Ramp.Steps[1].Hold.D() != 90*time.Minute || !l.Ramp.AutoPromote ||
			!l.Ramp.AutoRollback || len(l.Ramp.LiveSteps) != 1 || l.Gates.MinPairs != 50 || l.Gates.MaxLatencyRatio.P99 != 3 {
			t.Fatalf("created %+v (ramp %+v)", l, l.Ramp)
		}
		// A ramped launch starts at its first step, now.
		if l.SamplePercent != 1 || l.RampStep != 0 || l.StepStartedAt.Before(before) || l.StepStartedAt.After(time.Now()) {
			t.Fatalf("ramp start: sample %v step %d started %s", l.SamplePercent, l.RampStep, l.StepStartedAt)
		}
		res, data := e.do("GET", "/v1/launches/"+l.ID, nil)
		for _, want := range []string{`"hold":"1h30m"`, `"sticky_key":"header:x-user-id"`, `"ramp_step":0`, `"max_rps":250`, `"gates":{"min_pairs":50,`} {
			if res.StatusCode != 200 || !strings.Contains(string(data), want) {
				t.Fatalf("GET lacks %s: %s", want, data)
			}
		}

		// PATCH: a manual percentage on a ramped launch is allowed.
		var p launch.Launch
		e.ok(http.StatusOK, "PATCH", "/v1/launches/"+l.ID, map[string]any{"sample_percent": 3, "max_rps": 0, "exclude_paths": []string{}, "reason": "more data"}, fresh(&p))
		if p.SamplePercent != 3 || p.MaxRPS != 0 || len(p.ExcludePaths) != 0 || p.RampStep != 0 || !p.StepStartedAt.Equal(l.StepStartedAt) || p.Ramp == nil {
			t.Fatalf("patched %+v", p)
		}
		// A new ramp restarts at its first step; gates are replaced whole.
		e.ok(http.StatusOK, "PATCH", "/v1/launches/"+l.ID, map[string]any{"ramp": map[string]any{"steps": []map[string]any{{"percent": 5, "hold": "1m"}}},
			"gates": map[string]any{"alpha": 0.05}}, fresh(&p))
		if p.SamplePercent != 5 || p.RampStep != 0 || !p.StepStartedAt.After(l.StepStartedAt) || p.Gates != (launch.Gates{Alpha: 0.05}) || p.Ramp.AutoPromote {
			t.Fatalf("new ramp %+v", p)
		}
		e.ok(http.StatusOK, "PATCH", "/v1/launches/"+l.ID, map[string]any{"ramp": map[string]any{}}, fresh(&p))
		if p.Ramp != nil || !p.StepStartedAt.IsZero() || p.SamplePercent != 5 {
			t.Fatalf("ramp removed: %+v", p)
		}

		for _, c := range []struct {
			body map[string]any
			code int
			want string
		}{
			{map[string]any{"ramp": map[string]any{"steps": []map[string]any{{"percent": 10}, {"percent": 5}}}}, 422, "ramp.steps[1].percent 5"},
			{map[string]any{"ramp": map[string]any{"steps": []map[string]any{{"percent": 10, "hold": "soon"}}}}, 422, `ramp.steps[0].hold "soon"`},
			{map[string]any{"ramp": map[string]any{"steps": []map[string]any{{"percent": 10, "holds": "1m"}}}}, 400, `unknown field "holds"`},
			{map[string]any{"ramp": map[string]any{"steps": []map[string]any{{"percent": 10}}}, "sample_percent": 20}, 422, "ramp.steps[0].percent 10"},
			{map[string]any{"gates": map[string]any{"max_mismatch_rate": 2}}, 422, "gates.max_mismatch_rate"},
			{map[string]any{"gates": map[string]any{"min_pairz": 2}}, 400, `unknown field "min_pairz"`},
			{map[string]any{"sticky_key": "body:user"}, 422, "sticky_key"},
			{map[string]any{"include_paths": []string{"api"}}, 422, "include_paths[0]"},
			{map[string]any{"max_rps": -1}, 422, "max_rps"},
		} {
			body := map[string]any{"name": "bad", "shadow_url": "http://s"}
			for k, v := range c.body {
				body[k] = v
			}
			e.apiError(c.code, "POST", "/v1/launches", body, c.want)
		}
	})

	t.Run("verdict", func(t *testing.T) {
		e := *e
		e.t = t
		var l launch.Launch
		e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{"name": "judged", "shadow_url": "http://s",
			"ramp": map[string]any{"steps": []map[string]any{{"percent": 10, "hold": "1h"}}}, "gates": map[string]any{"min_pairs": 100}}, &l)
		v, _ := e.verdict(l.ID)
		if v.Verdict != api.VerdictInconclusive || v.Window.Pairs != 0 || !v.Window.From.Equal(l.StepStartedAt) || v.Window.Step == nil ||
			len(v.Checks) != 7 || check(t, v, "pairs").OK || v.Gates.MinPairs != 100 || v.Gates.MaxMismatchRate != 0.01 || len(v.Reasons) == 0 {
			t.Fatalf("verdict without pairs: %+v", v)
		}
		// Bad pairs from before the step do not count: the window is the
		// current step.
		e.pairs(l.ID, "old", 300, l.StepStartedAt.Add(-time.Minute), func(i int, r *analytics.Row) {
			r.Match, r.ShadowStatus, r.DiffPaths, r.DiffKinds = false, 500, []string{"status"}, []string{"status"}
		})
		e.pairs(l.ID, "new", 150, time.Now(), nil)
		time.Sleep(600 * time.Millisecond) // the empty window's cached numbers expire
		// The first poll after the TTL gets the old numbers, stale, and
		// starts their refresh; a later poll gets the refreshed ones.
		if v, cache := e.verdict(l.ID); cache != "stale" || v.Window.Pairs != 0 || v.AgeSeconds < 0.5 {
			t.Fatalf("expired window: %s %+v", cache, v)
		}
		testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			var cache string
			if v, cache = e.verdict(l.ID); v.Verdict != api.VerdictPass || v.Window.Pairs != 150 || cache != "hit" {
				return fmt.Errorf("clean window: %s %+v", cache, v)
			}
			return nil
		})
		if v2, cache := e.verdict(l.ID); cache != "hit" || v2.Verdict != v.Verdict || !v2.GeneratedAt.Equal(v.GeneratedAt) {
			t.Fatalf("second poll within the TTL: %s %+v", cache, v2)
		}
		// A change of the gates applies at the next poll, cache or not.
		e.ok(http.StatusOK, "PATCH", "/v1/launches/"+l.ID, map[string]any{"gates": map[string]any{"min_pairs": 1000}}, nil)
		if v, _ := e.verdict(l.ID); v.Verdict != api.VerdictInconclusive || v.Gates.MinPairs != 1000 {
			t.Fatalf("after raising min_pairs: %+v", v)
		}

		// Mismatches and errors fail it.
		var bad launch.Launch
		e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{"name": "bad", "shadow_url": "http://s", "gates": map[string]any{"min_pairs": 10}}, &bad)
		e.pairs(bad.ID, "p", 200, time.Now(), func(i int, r *analytics.Row) {
			if i%10 == 0 {
				r.Match, r.ShadowStatus, r.StatusMatch, r.DiffPaths, r.DiffKinds = false, 503, false, []string{"status"}, []string{"status"}
			}
		})
		v, _ = e.verdict(bad.ID)
		if v.Verdict != api.VerdictFail || check(t, v, "mismatch_rate").Value != 0.1 || check(t, v, "error_rate_delta").Value != 0.1 ||
			check(t, v, "mismatch_rate").OK || check(t, v, "error_rate_delta").OK || !check(t, v, "latency_regression").OK || v.Window.Step != nil {
			t.Fatalf("bad shadow: %+v", v)
		}
		if !strings.Contains(strings.Join(v.Reasons, "|"), "mismatch_rate 10%") {
			t.Fatalf("reasons %q", v.Reasons)
		}

		// A slower shadow fails the latency gate, on the paired test.
		var slow launch.Launch
		e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{"name": "slow", "shadow_url": "http://s", "gates": map[string]any{"min_pairs": 10}}, &slow)
		e.pairs(slow.ID, "p", 300, time.Now(), func(i int, r *analytics.Row) {
			r.PrimaryLatencyUS = 1000 + uint64(i)
			r.ShadowLatencyUS = 2 * r.PrimaryLatencyUS
		})
		v, _ = e.verdict(slow.ID)
		reg := check(t, v, "latency_regression")
		if v.Verdict != api.VerdictFail || reg.OK || reg.Value >= 1e-20 || check(t, v, "latency_ratio_p50").Value < 1.9 || check(t, v, "latency_ratio_p50").OK {
			t.Fatalf("slow shadow: %+v", v)
		}
		e.apiError(404, "GET", "/v1/launches/nope/verdict", nil, "not found")
	})

	t.Run("promote and roll back", func(t *testing.T) {
		e := *e
		e.t = t
		// Stepped by the body.
		l := e.create("stepped", 5)
		var p launch.Launch
		e.ok(http.StatusOK, "POST", "/v1/launches/"+l.ID+"/promote", map[string]any{"reason": "looks good",
			"live_steps": []map[string]any{{"percent": 10, "hold": "1m"}, {"percent": 50, "hold": "1m"}}}, fresh(&p))
		if p.Status != launch.StatusPromoting || p.LivePercent != 10 || p.RampStep != 0 || p.Ramp == nil || len(p.Ramp.LiveSteps) != 2 || p.Mirrored() || !p.Live() {
			t.Fatalf("promoted with steps: %+v", p)
		}
		e.apiError(409, "POST", "/v1/launches/"+l.ID+"/promote", map[string]any{"live_steps": []map[string]any{{"percent": 20}}}, "promoting")
		e.apiError(409, "POST", "/v1/launches/"+l.ID+"/pause", nil, "promoting")
		// Promote again: complete now.
		e.ok(http.StatusOK, "POST", "/v1/launches/"+l.ID+"/promote", nil, fresh(&p))
		if p.Status != launch.StatusPromoted || p.LivePercent != 100 {
			t.Fatalf("completed: %+v", p)
		}
		e.ok(http.StatusOK, "POST", "/v1/launches/"+l.ID+"/promote", nil, fresh(&p)) // idempotent
		e.apiError(409, "POST", "/v1/launches/"+l.ID+"/rollback", nil, "promoted")

		// Stepped by the ramp's live steps; rolled back while promoting.
		var r launch.Launch
		e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{"name": "ramp live", "shadow_url": "http://s", "sticky_key": "cookie:session",
			"ramp": map[string]any{"live_steps": []map[string]any{{"percent": 30, "hold": "1m"}}}}, &r)
		if r.SamplePercent != 0 || r.Ramp == nil {
			t.Fatalf("live steps only: %+v", r)
		}
		e.ok(http.StatusOK, "POST", "/v1/launches/"+r.ID+"/promote", nil, fresh(&p))
		if p.Status != launch.StatusPromoting || p.LivePercent != 30 {
			t.Fatalf("promoted by the ramp's live steps: %+v", p)
		}
		e.ok(http.StatusOK, "POST", "/v1/launches/"+r.ID+"/rollback", map[string]any{"reason": "errors on live"}, fresh(&p))
		if p.Status != launch.StatusRolledBack || p.LivePercent != 0 || p.Live() || p.Mirrored() {
			t.Fatalf("rolled back: %+v", p)
		}

		// "live_steps": [] promotes at once; invalid steps are refused.
		x := e.create("at once", 5)
		e.apiError(422, "POST", "/v1/launches/"+x.ID+"/promote", map[string]any{"live_steps": []map[string]any{{"percent": 50}, {"percent": 40}}}, "ramp.live_steps[1].percent")
		e.ok(http.StatusOK, "POST", "/v1/launches/"+x.ID+"/promote", map[string]any{"live_steps": []any{}}, fresh(&p))
		if p.Status != launch.StatusPromoted || p.LivePercent != 100 || p.Ramp != nil {
			t.Fatalf("promoted at once: %+v", p)
		}

		// Resume restarts the step's hold and window.
		var rs launch.Launch
		e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{"name": "resumed", "shadow_url": "http://s",
			"ramp": map[string]any{"steps": []map[string]any{{"percent": 1, "hold": "1m"}}}}, &rs)
		e.ok(http.StatusOK, "POST", "/v1/launches/"+rs.ID+"/pause", nil, fresh(&p))
		if !p.StepStartedAt.Equal(rs.StepStartedAt) {
			t.Fatalf("pause moved the step start")
		}
		e.ok(http.StatusOK, "POST", "/v1/launches/"+rs.ID+"/resume", map[string]any{"reason": "back"}, fresh(&p))
		if !p.StepStartedAt.After(rs.StepStartedAt) {
			t.Fatalf("resume kept the step start %s", p.StepStartedAt)
		}

		// The audit log, newest first, in the report.
		a := e.waitAudit(r.ID, 3)
		if a[0].Action != analytics.AuditRolledBack || a[0].FromStatus != "promoting" || a[0].ToStatus != "rolled_back" || a[0].Reason != "errors on live" ||
			a[1].Action != analytics.AuditPromoted || a[1].LivePercent != 30 || a[1].ToStatus != "promoting" ||
			a[2].Action != analytics.AuditCreated || a[2].FromStatus != "" || a[0].Actor != "admin" || a[0].TS.Before(a[1].TS) {
			t.Fatalf("audit %+v", a)
		}
	})
}

// TestControllerDrives: the reporter's own controller, on real NATS KV
// and ClickHouse rows, advances a clean launch through its ramp and
// promotes it, and rolls back a failing one; each change is audited as the
// controller's.
func TestControllerDrives(t *testing.T) {
	e := startEnv(t, envOptions{cacheTTL: 0, controlInterval: 100 * time.Millisecond})
	get := func(id string) launch.Launch {
		var l launch.Launch
		e.ok(http.StatusOK, "GET", "/v1/launches/"+id, nil, &l)
		return l
	}
	var good, bad launch.Launch
	ramp := map[string]any{"steps": []map[string]any{{"percent": 10, "hold": "0s"}, {"percent": 50, "hold": "200ms"}},
		"auto_promote": true, "auto_rollback": true}
	e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{"name": "good", "shadow_url": "http://s", "ramp": ramp, "gates": map[string]any{"min_pairs": 20}}, &good)
	e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{"name": "bad", "shadow_url": "http://s", "ramp": ramp, "gates": map[string]any{"min_pairs": 20}}, &bad)

	// Without pairs nothing moves.
	time.Sleep(500 * time.Millisecond)
	if l := get(good.ID); l.RampStep != 0 || l.Status != launch.StatusActive || l.SamplePercent != 10 {
		t.Fatalf("moved without evidence: %+v", l)
	}
	// Step 1's evidence: the good one advances to 50%, the bad one is
	// rolled back.
	e.pairs(good.ID, "s0", 30, time.Now(), nil)
	e.pairs(bad.ID, "s0", 30, time.Now(), func(i int, r *analytics.Row) {
		r.Match, r.ShadowStatus, r.StatusMatch, r.DiffPaths, r.DiffKinds = false, 500, false, []string{"status"}, []string{"status"}
	})
	var step1 launch.Launch
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		step1 = get(good.ID)
		if step1.RampStep != 1 || step1.SamplePercent != 50 {
			return fmt.Errorf("good: %+v", step1)
		}
		if l := get(bad.ID); l.Status != launch.StatusRolledBack {
			return fmt.Errorf("bad: %s", l.Status)
		}
		return nil
	})
	// The new step's window is empty: it waits for evidence past its hold.
	time.Sleep(400 * time.Millisecond)
	if l := get(good.ID); l.Status != launch.StatusActive || l.RampStep != 1 {
		t.Fatalf("advanced without evidence in the step: %+v", l)
	}
	e.pairs(good.ID, "s1", 30, time.Now(), nil)
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if l := get(good.ID); l.Status != launch.StatusPromoted || l.LivePercent != 100 {
			return fmt.Errorf("good: %s live %v", l.Status, l.LivePercent)
		}
		return nil
	})

	audit := e.waitAudit(good.ID, 3)
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Action+" by "+a.Actor)
	}
	want := []string{"promoted by controller:test-reporter", "step_advanced by controller:test-reporter", "created by admin"}
	for i := range want {
		if !strings.HasPrefix(actions[i], want[i]) {
			t.Fatalf("audit %q, want %q", actions, want)
		}
	}
	if !strings.Contains(audit[0].Reason, "gates passed on 30 pairs") || !strings.Contains(audit[0].Details, `"checks"`) {
		t.Fatalf("controller audit entry %+v", audit[0])
	}
	var rep api.Report
	testenv.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		e.ok(http.StatusOK, "GET", "/v1/launches/"+bad.ID+"/report", nil, &rep)
		if len(rep.Audit) != 2 || rep.Audit[0].Action != analytics.AuditRolledBack || !strings.Contains(rep.Audit[0].Reason, "mismatch_rate 100%") {
			return fmt.Errorf("bad's audit %+v", rep.Audit)
		}
		return nil
	})
	res, data := request(t, "GET", e.admin+"/metrics", nil)
	for _, want := range []string{`darklaunch_reporter_controller_decisions_total{decision="rolled_back"} 1`,
		`darklaunch_reporter_controller_decisions_total{decision="step_advanced"} 1`, `darklaunch_reporter_audit_entries_total`} {
		if res.StatusCode != 200 || !strings.Contains(string(data), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}

// TestControllerLiveGates: a promoting launch is judged on the live
// traffic the taps report (KV darklaunch_live): clean live traffic steps it
// to 100%, a failing new version is rolled back, and without live traffic
// it waits.
func TestControllerLiveGates(t *testing.T) {
	e := startEnv(t, envOptions{cacheTTL: 0, controlInterval: 100 * time.Millisecond})
	_, js := testenv.Connect(t, e.js.URL())
	kv, err := live.OpenBucket(testenv.Context(t), js)
	if err != nil {
		t.Fatal(err)
	}
	promoting := func(name string) launch.Launch {
		var l launch.Launch
		e.ok(http.StatusCreated, "POST", "/v1/launches", map[string]any{"name": name, "shadow_url": "http://s", "sticky_key": "header:X-User-Id",
			"ramp":  map[string]any{"live_steps": []map[string]any{{"percent": 50, "hold": "200ms"}}, "auto_rollback": true},
			"gates": map[string]any{"min_pairs": 20}}, &l)
		id := l.ID
		e.ok(http.StatusOK, "POST", "/v1/launches/"+id+"/promote", nil, fresh(&l))
		if l.Status != launch.StatusPromoting || l.LivePercent != 50 {
			t.Fatalf("promote: %+v", l)
		}
		return l
	}
	report := func(l launch.Launch, tap string, newErrs uint64) {
		side := func(errs uint64) live.Side {
			s := live.Side{Requests: 100, Errors: errs, LatencyBuckets: make([]uint64, live.NumBuckets)}
			s.LatencyBuckets[live.BucketOf(5*time.Millisecond)] = 100
			return s
		}
		if err := live.Publish(testenv.Context(t), kv, live.Snapshot{V: live.Version, LaunchID: l.ID, TapID: tap, At: time.Now(),
			Since: l.StepStartedAt.Add(10 * time.Millisecond), LivePercent: l.LivePercent, New: side(newErrs), Primary: side(0)}); err != nil {
			t.Fatal(err)
		}
	}
	good, bad, quiet := promoting("good"), promoting("bad"), promoting("quiet")
	var v api.Verdict
	e.ok(http.StatusOK, "GET", "/v1/launches/"+quiet.ID+"/verdict", nil, &v)
	if v.Verdict != api.VerdictInconclusive || v.Window.Source != api.SourceLive || v.Checks[0].Name != "live_requests" {
		t.Fatalf("live verdict without traffic: %+v", v)
	}
	report(good, "tap-1", 0)
	report(good, "tap-2", 1)
	report(bad, "tap-1", 40)
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var g, b launch.Launch
		e.ok(http.StatusOK, "GET", "/v1/launches/"+good.ID, nil, &g)
		e.ok(http.StatusOK, "GET", "/v1/launches/"+bad.ID, nil, &b)
		if g.Status != launch.StatusPromoted || g.LivePercent != 100 || b.Status != launch.StatusRolledBack || b.LivePercent != 0 {
			return fmt.Errorf("good %s %v, bad %s %v", g.Status, g.LivePercent, b.Status, b.LivePercent)
		}
		return nil
	})
	var q launch.Launch
	e.ok(http.StatusOK, "GET", "/v1/launches/"+quiet.ID, nil, &q)
	if q.Status != launch.StatusPromoting || q.LivePercent != 50 {
		t.Fatalf("a live step without live traffic moved: %+v", q)
	}
	var rep api.Report
	testenv.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		e.ok(http.StatusOK, "GET", "/v1/launches/"+bad.ID+"/report", nil, &rep)
		if len(rep.Audit) != 3 || rep.Audit[0].Action != analytics.AuditRolledBack || !strings.Contains(rep.Audit[0].Reason, "live error_rate_delta 40%") ||
			!strings.HasPrefix(rep.Audit[0].Actor, "controller:") {
			return fmt.Errorf("bad's audit %+v", rep.Audit)
		}
		return nil
	})
}
