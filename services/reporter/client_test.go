package reporter_test

// The tests of pkg/client live here, not in pkg/client: they need a real
// reporter (real embedded NATS, ClickHouse and Redis from pkg/testenv),
// and the pkg module cannot import services/reporter (the reporter's module
// requires pkg, and each module builds alone with GOWORK=off).

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/client"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// apiError checks that err is the *client.APIError of a status, matching
// sentinel (errors.Is), whose message contains want.
func apiError(t *testing.T, what string, err error, status int, sentinel error, want string) {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != status || !errors.Is(err, sentinel) || !strings.Contains(ae.Message, want) {
		t.Fatalf("%s: error %v, want a %d APIError matching %v with a message containing %q", what, err, status, sentinel, want)
	}
}

// TestClient runs every method of pkg/client against a real reporter: the
// typed requests arrive as the API reads them, the answers decode into the
// pkg/api types, and error answers become errors the caller inspects with
// errors.As and errors.Is.
func TestClient(t *testing.T) {
	e := startEnv(t, envOptions{})
	c, err := client.New(e.base+"/", client.WithToken(e.token))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t)

	// Tokens: none, or one of too small a scope, are typed errors.
	anonymous, _ := client.New(e.base)
	_, err = anonymous.List(ctx)
	apiError(t, "list without a token", err, http.StatusUnauthorized, client.ErrUnauthorized, "needs a token")
	reader, _ := client.New(e.base, client.WithToken(testTokens["read"]))
	if _, err := reader.List(ctx); err != nil {
		t.Fatalf("list with a read token: %v", err)
	}
	_, err = reader.Create(ctx, api.CreateRequest{Name: "x", ShadowURL: "http://s"})
	apiError(t, "create with a read token", err, http.StatusForbidden, client.ErrForbidden, "needs admin")

	// Create: the typed request, with the fields the flat map used to carry.
	l, err := c.Create(ctx, api.CreateRequest{Name: "client", Service: "checkout", ShadowURL: "http://shadow.internal:8080",
		SecondaryURL: "http://primary-2.internal:8080", SamplePercent: new(10.0), Methods: []string{"get", "POST"},
		StickyKey: "header:X-User-Id", Gates: launch.Gates{MinPairs: 100}, Reason: "client test"})
	if err != nil {
		t.Fatal(err)
	}
	if l.ID == "" || l.Status != launch.StatusActive || l.SamplePercent != 10 || l.Service != "checkout" ||
		!slices.Equal(l.Methods, []string{"GET", "POST"}) || l.StickyKey != "header:X-User-Id" || l.SecondaryURL == "" || l.Gates.MinPairs != 100 {
		t.Fatalf("created %+v", l)
	}
	// A ramped launch starts at its first step when sample_percent is left out.
	ramped, err := c.Create(ctx, api.CreateRequest{Name: "ramped", ShadowURL: "http://s:1",
		Ramp: &launch.Ramp{Steps: []launch.Step{{Percent: 2, Hold: launch.Duration(time.Hour)}}}})
	if err != nil || ramped.SamplePercent != 2 || ramped.Service != launch.DefaultService || ramped.StepStartedAt.IsZero() {
		t.Fatalf("ramped: %v %+v", err, ramped)
	}
	_, err = c.Create(ctx, api.CreateRequest{Name: "bad", ShadowURL: "http://s", SamplePercent: new(150.0)})
	apiError(t, "create at 150%", err, http.StatusUnprocessableEntity, launch.ErrInvalid, "sample_percent 150 must be between 0 and 100")
	_, err = c.Create(ctx, api.CreateRequest{Name: "bad", ShadowURL: "http://s", SamplePercent: new(5.0),
		Ramp: &launch.Ramp{Steps: []launch.Step{{Percent: 2}}}})
	apiError(t, "create off the ramp", err, http.StatusUnprocessableEntity, launch.ErrInvalid, "differs from ramp.steps[0].percent")

	// Get and List.
	got, err := c.Get(ctx, l.ID)
	if err != nil || got.ID != l.ID || got.Revision != l.Revision || got.Name != "client" {
		t.Fatalf("get: %v %+v", err, got)
	}
	_, err = c.Get(ctx, "no-such-launch")
	apiError(t, "get unknown", err, http.StatusNotFound, client.ErrNotFound, "launch not found")
	if !errors.Is(err, launch.ErrNotFound) {
		t.Fatalf("a 404 does not match launch.ErrNotFound: %v", err)
	}
	ls, err := c.List(ctx)
	if err != nil || len(ls) != 2 || ls[0].ID != ramped.ID || ls[1].ID != l.ID {
		t.Fatalf("list: %v %+v", err, ls)
	}

	// Patch: a zero is a value, not "absent"; absent fields stay.
	patched, err := c.Patch(ctx, l.ID, api.PatchRequest{Patch: launch.Patch{SamplePercent: new(0.0)}, Reason: "quiet"})
	if err != nil || patched.SamplePercent != 0 || patched.Name != "client" || patched.StickyKey != "header:X-User-Id" || patched.Revision <= l.Revision {
		t.Fatalf("patch: %v %+v", err, patched)
	}
	patched, err = c.Patch(ctx, l.ID, api.PatchRequest{Patch: launch.Patch{Name: new("client v2"), SecondaryURL: new(""),
		Methods: &[]string{}, Gates: &launch.Gates{}}})
	if err != nil || patched.Name != "client v2" || patched.SecondaryURL != "" || !slices.Equal(patched.Methods, launch.DefaultMethods) ||
		patched.Gates != (launch.Gates{}) || patched.SamplePercent != 0 {
		t.Fatalf("patch: %v %+v", err, patched)
	}
	_, err = c.Patch(ctx, l.ID, api.PatchRequest{Reason: "nothing"})
	apiError(t, "empty patch", err, http.StatusBadRequest, client.ErrBadRequest, "PATCH body changes nothing")
	_, err = c.Patch(ctx, l.ID, api.PatchRequest{Patch: launch.Patch{ShadowURL: new("/relative")}})
	apiError(t, "invalid patch", err, http.StatusUnprocessableEntity, launch.ErrInvalid, "shadow_url")

	// The actions, with and without a reason.
	for _, step := range []struct {
		action launch.Action
		reason string
		want   launch.Status
	}{
		{launch.ActionPause, "checking", launch.StatusPaused},
		{launch.ActionResume, "", launch.StatusActive},
	} {
		al, err := c.Action(ctx, l.ID, step.action, step.reason)
		if err != nil || al.Status != step.want {
			t.Fatalf("%s: %v %+v", step.action, err, al)
		}
	}

	// Report and verdict over real rows.
	if _, err := c.Patch(ctx, l.ID, api.PatchRequest{Patch: launch.Patch{SamplePercent: new(100.0)}}); err != nil {
		t.Fatal(err)
	}
	e.pairs(l.ID, "client", 150, time.Now().UTC(), func(i int, r *analytics.Row) {
		if i == 0 {
			r.Match, r.BodyMatch, r.Fingerprint = false, false, "fp-client"
			r.DiffPaths, r.DiffKinds, r.DiffGeneralized, r.DiffNoise = []string{"$.total"}, []string{"type_changed"}, []string{"$.total"}, []bool{false}
		}
	})
	if err := analytics.InsertExamples(ctx, e.ch, testDB, []analytics.Example{{LaunchID: l.ID, Fingerprint: "fp-client",
		EnvelopeID: l.ID + "-client-00000", TS: time.Now().UTC(), Route: "/api/users/{id}", Method: "GET", Path: "/api/users/0",
		DiffPaths: []string{"$.total"}, DiffKinds: []string{"type_changed"}, RequestHeaders: `{"Accept":["*/*"]}`,
		PrimaryStatus: 200, PrimaryHeaders: `{}`, PrimaryBody: `{"total":1}`, ShadowStatus: 200, ShadowHeaders: `{}`, ShadowBody: `{"total":"1"}`}}); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Report(ctx, l.ID)
	if err != nil || rep.Launch == nil || rep.Launch.ID != l.ID || rep.Totals.Compared != 150 || rep.Totals.Mismatches != 1 ||
		len(rep.Routes) != 1 || rep.Routes[0].LatencyMS.Primary.P50 != 1 || len(rep.Classes) != 1 || rep.Classes[0].Fingerprint != "fp-client" ||
		!slices.Equal(rep.Classes[0].Examples, []string{l.ID + "-client-00000"}) || len(rep.Audit) == 0 {
		t.Fatalf("report: %v %+v", err, rep)
	}
	ex, err := c.Examples(ctx, l.ID, "fp-client")
	if err != nil || ex.LaunchID != l.ID || len(ex.Examples) != 1 || ex.Examples[0].Shadow.Body != `{"total":"1"}` ||
		!slices.Equal(ex.Examples[0].Diffs, []api.PathKind{{Path: "$.total", Kind: "type_changed"}}) {
		t.Fatalf("examples: %v %+v", err, ex)
	}
	if none, err := c.Examples(ctx, l.ID, "no-such-class"); err != nil || len(none.Examples) != 0 {
		t.Fatalf("examples of an unknown class: %v %+v", err, none)
	}
	v, err := c.Verdict(ctx, l.ID)
	if err != nil || v.LaunchID != l.ID || v.Window.Source != api.SourcePairs || v.Window.Pairs != 150 || len(v.Checks) == 0 || v.Checks[0].Name != api.CheckPairs ||
		(v.Verdict != api.VerdictPass && v.Verdict != api.VerdictFail && v.Verdict != api.VerdictInconclusive) {
		t.Fatalf("verdict: %v %+v", err, v)
	}
	_, err = c.Report(ctx, "no-such-launch")
	apiError(t, "report of an unknown launch", err, http.StatusNotFound, client.ErrNotFound, "launch not found")

	// Promotion: live steps, then completing it; refusals are ErrConflict
	// with the API's message.
	pl, err := c.Promote(ctx, l.ID, api.PromoteRequest{Reason: "canary passed", LiveSteps: []launch.Step{{Percent: 10, Hold: launch.Duration(time.Minute)}}})
	if err != nil || pl.Status != launch.StatusPromoting || pl.LivePercent != 10 || pl.Ramp == nil || len(pl.Ramp.LiveSteps) != 1 {
		t.Fatalf("promote with live steps: %v %+v", err, pl)
	}
	_, err = c.Action(ctx, l.ID, launch.ActionPause, "")
	apiError(t, "pause while promoting", err, http.StatusConflict, launch.ErrConflict, "launch is promoting; it cannot pause (roll back instead)")
	_, err = c.Promote(ctx, l.ID, api.PromoteRequest{LiveSteps: []launch.Step{}})
	apiError(t, "live steps while promoting", err, http.StatusConflict, launch.ErrConflict, "live_steps apply only to a launch not yet promoted")
	if pl, err = c.Promote(ctx, l.ID, api.PromoteRequest{}); err != nil || pl.Status != launch.StatusPromoted || pl.LivePercent != 100 {
		t.Fatalf("complete the promotion: %v %+v", err, pl)
	}
	// Promote at once ([] live steps), then roll back the other launch.
	if pl, err = c.Promote(ctx, ramped.ID, api.PromoteRequest{LiveSteps: []launch.Step{}}); err != nil || pl.Status != launch.StatusPromoted {
		t.Fatalf("promote at once: %v %+v", err, pl)
	}
	_, err = c.Action(ctx, ramped.ID, launch.ActionRollback, "too late")
	apiError(t, "rollback of a promoted launch", err, http.StatusConflict, launch.ErrConflict, "launch state conflict: launch is promoted; it cannot rollback")

	// Do: any request, and the mux's own errors as JSON errors too.
	var list api.LaunchList
	if err := c.Do(ctx, "GET", "/v1/launches", nil, &list); err != nil || len(list.Launches) != 2 {
		t.Fatalf("do: %v %+v", err, list)
	}
	err = c.Do(ctx, "GET", "/v1/nothing-here", nil, nil)
	apiError(t, "unknown route", err, http.StatusNotFound, client.ErrNotFound, "no route GET /v1/nothing-here")
	err = c.Do(ctx, "POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "http://s", "sample_precent": 1}, nil)
	apiError(t, "unknown field", err, http.StatusBadRequest, client.ErrBadRequest, `unknown field "sample_precent"`)
}

// TestClientUnavailable: while the reporter's dependencies are down the
// client gets ErrUnavailable, which a caller retries.
func TestClientUnavailable(t *testing.T) {
	js := testenv.StartJetStream(t)
	js.Stop()
	e := &env{t: t, js: js}
	e.svc = e.run(newUnreachableConfig(t, js))
	c, err := client.New(e.base, client.WithToken(testTokens["read"]))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.List(testenv.Context(t))
	apiError(t, "list without NATS", err, http.StatusServiceUnavailable, client.ErrUnavailable, "not connected")
}
