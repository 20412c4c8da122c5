package demo

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
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
