package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// decodeStrict reads a body as the reporter does: unknown fields refused.
func decodeStrict(body string, v any) error {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func TestPatchRequestAbsentNullZero(t *testing.T) {
	var p PatchRequest
	if err := decodeStrict(`{"sample_percent": 0, "name": null, "methods": [], "reason": "why"}`, &p); err != nil {
		t.Fatal(err)
	}
	if p.SamplePercent == nil || *p.SamplePercent != 0 || p.Name != nil || p.Methods == nil || len(*p.Methods) != 0 ||
		p.ShadowURL != nil || p.Ramp != nil || p.Reason != "why" || p.Empty() {
		t.Fatalf("decoded %+v", p)
	}
	if err := decodeStrict(`{"service": "other"}`, &PatchRequest{}); err == nil || !strings.Contains(err.Error(), `unknown field "service"`) {
		t.Fatalf("service is not patchable, got %v", err)
	}
	if err := decodeStrict(`{"reason": "only a reason"}`, &p); err != nil {
		t.Fatal(err)
	}
	p = PatchRequest{Reason: "only a reason"}
	if !p.Empty() {
		t.Fatal("a reason alone changes nothing")
	}
	// Encoded, only the fields set are sent: zero values included.
	checkJSON(t, PatchRequest{Patch: launch.Patch{SamplePercent: new(0.0), Name: new("")}},
		`{"name":"","sample_percent":0}`)
}

func TestCreateRequestJSON(t *testing.T) {
	checkJSON(t, CreateRequest{Name: "checkout v2", ShadowURL: "http://shadow:8080"},
		`{"name":"checkout v2","shadow_url":"http://shadow:8080"}`)
	checkJSON(t, CreateRequest{Name: "n", ShadowURL: "http://s", SamplePercent: new(0.0), Methods: []string{"GET"},
		Gates: launch.Gates{MinPairs: 5}, Reason: "r"},
		`{"name":"n","shadow_url":"http://s","sample_percent":0,"methods":["GET"],"gates":{"min_pairs":5,"max_mismatch_rate":0,"max_error_rate_delta":0,"max_latency_ratio":{"p50":0,"p95":0,"p99":0},"alpha":0,"min_latency_delta_ms":0},"reason":"r"}`)

	var c CreateRequest
	body := `{"name":"n","service":"svc","shadow_url":"http://s","secondary_url":"http://p2","sample_percent":3,"methods":["GET"],` +
		`"compare":{"ignore_paths":["$.a"]},"sticky_key":"header:X-User-Id","include_paths":["/api/**"],"exclude_paths":["/x"],` +
		`"max_rps":9,"ramp":{"steps":[{"percent":3,"hold":"1m"}]},"gates":{"min_pairs":7},"reason":"r"}`
	if err := decodeStrict(body, &c); err != nil {
		t.Fatal(err)
	}
	l := c.Launch()
	if l.Name != "n" || l.Service != "svc" || l.ShadowURL != "http://s" || l.SecondaryURL != "http://p2" || l.SamplePercent != 0 ||
		len(l.Methods) != 1 || len(l.Compare.IgnorePaths) != 1 || l.StickyKey != "header:X-User-Id" || len(l.IncludePaths) != 1 ||
		len(l.ExcludePaths) != 1 || l.MaxRPS != 9 || l.Ramp == nil || l.Gates.MinPairs != 7 {
		t.Fatalf("Launch() = %+v", l)
	}
	if *c.SamplePercent != 3 {
		t.Fatalf("sample_percent %v", *c.SamplePercent)
	}
}

func TestPromoteRequestLiveSteps(t *testing.T) {
	// nil: the ramp's live steps; empty: 100% at once. Both must survive
	// the round trip.
	checkJSON(t, PromoteRequest{}, `{}`)
	checkJSON(t, PromoteRequest{LiveSteps: []launch.Step{}}, `{"live_steps":[]}`)
	checkJSON(t, PromoteRequest{Reason: "r", LiveSteps: []launch.Step{{Percent: 10, Hold: launch.Duration(6e10)}}},
		`{"reason":"r","live_steps":[{"percent":10,"hold":"1m"}]}`)
	for body, wantNil := range map[string]bool{`{}`: true, `{"live_steps":null}`: true, `{"live_steps":[]}`: false} {
		var p PromoteRequest
		if err := decodeStrict(body, &p); err != nil || (p.LiveSteps == nil) != wantNil {
			t.Errorf("%s: live steps %#v (%v), want nil %v", body, p.LiveSteps, err, wantNil)
		}
	}
	var a ActionRequest
	if err := decodeStrict(`{"reason":"x"}`, &a); err != nil || a.Reason != "x" {
		t.Fatalf("%+v %v", a, err)
	}
	checkJSON(t, ActionRequest{Reason: "x"}, `{"reason":"x"}`)
}

func TestCreateRequestCarriesCapture(t *testing.T) {
	var req CreateRequest
	if err := decodeStrict(`{"name": "n", "shadow_url": "http://s", "capture": {"drop_headers": ["Cookie"], "replace_headers": {"Authorization": "Bearer shadow"}}}`, &req); err != nil {
		t.Fatal(err)
	}
	l := req.Launch()
	if l.Capture.DropHeaders[0] != "Cookie" || l.Capture.ReplaceHeaders["Authorization"] != "Bearer shadow" {
		t.Fatalf("launch %+v", l.Capture)
	}
	var p PatchRequest
	if err := decodeStrict(`{"capture": {}}`, &p); err != nil || p.Capture == nil || p.Empty() {
		t.Fatalf("patch %+v %v", p, err)
	}
}
