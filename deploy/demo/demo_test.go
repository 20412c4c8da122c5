package demo

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"
)

// The demo exists to show each kind of regression; if a route stops
// differing the way the docs say, the demo silently shows nothing.
func TestShadowDiffersOnPurpose(t *testing.T) {
	p, _ := Handler(Primary, Options{})
	s, _ := Handler(Shadow, Options{ErrorEvery: 2})
	get := func(h http.Handler, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if _, a := get(p, "/api/users/3"); a != func() string { _, b := get(s, "/api/users/3"); return b }() {
		t.Fatal("users route differs; it must be identical")
	}
	_, po := get(p, "/api/orders/3")
	_, so := get(s, "/api/orders/3")
	var pm, sm map[string]any
	if json.Unmarshal([]byte(po), &pm) != nil || json.Unmarshal([]byte(so), &sm) != nil {
		t.Fatal("orders are not JSON")
	}
	if _, ok := pm["currency"]; !ok {
		t.Fatal("primary order lacks currency")
	}
	if _, ok := sm["currency"]; ok {
		t.Fatal("shadow order still has currency at the top level")
	}
	if _, ok := sm["total"].(map[string]any); !ok {
		t.Fatalf("shadow total is %T, want an object", sm["total"])
	}
	c1, _ := get(s, "/api/inventory/A")
	c2, _ := get(s, "/api/inventory/A")
	if c1 != 200 || c2 != 500 {
		t.Fatalf("shadow inventory statuses %d, %d; want 200 then 500", c1, c2)
	}
	if _, err := Handler("canary", Options{}); err == nil {
		t.Fatal("unknown variant accepted")
	}
}

func get(t *testing.T, h http.Handler, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s: %v: %s", path, err, rec.Body)
	}
	return rec.Code, m
}

// /api/status is noise in every variant: request_id and generated_at
// differ from one answer to the next, status and version never do.
func TestStatusIsNoiseEverywhere(t *testing.T) {
	var answers []map[string]any
	for _, variant := range []string{Primary, Secondary, Shadow} {
		h, err := Handler(variant, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			code, m := get(t, h, "/api/status")
			if code != 200 || m["status"] != "ok" || m["version"] != Version || len(m) != 4 {
				t.Fatalf("%s /api/status = %d %v", variant, code, m)
			}
			if _, err := time.Parse(time.RFC3339Nano, m["generated_at"].(string)); err != nil {
				t.Fatalf("%s generated_at: %v", variant, err)
			}
			answers = append(answers, m)
		}
	}
	ids := map[any]bool{}
	for _, m := range answers {
		ids[m["request_id"]] = true
	}
	if len(ids) != len(answers) {
		t.Fatalf("request ids repeat: %v", answers)
	}
}

// The secondary answers as the primary does on every route but the noisy
// one, including the shadow's regression routes.
func TestSecondaryIsThePrimary(t *testing.T) {
	p, _ := Handler(Primary, Options{ErrorEvery: 2})
	s, _ := Handler(Secondary, Options{ErrorEvery: 2})
	for _, path := range []string{"/api/users/3", "/api/orders/7", "/api/search?q=x", "/api/inventory/1", "/api/inventory/1", "/api/inventory/1"} {
		pc, pm := get(t, p, path)
		sc, sm := get(t, s, path)
		if pc != sc || !reflect.DeepEqual(pm, sm) {
			t.Fatalf("%s: primary %d %v, secondary %d %v", path, pc, pm, sc, sm)
		}
	}
}
