package e2e

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// stampResponses is a shadow that adds a random request id and the time
// to every response's headers; /api/status (in every demo variant, the
// primary's version included) also carries them in its body.
func stampResponses(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", rand.Text())
		w.Header().Set("X-Generated-At", time.Now().UTC().Format(time.RFC3339Nano))
		next.ServeHTTP(w, r)
	})
}

// routeOf finds a route in a report.
func routeOf(t *testing.T, rep *api.Report, route string) api.RouteStats {
	t.Helper()
	r, ok := rep.Route(route)
	if !ok {
		t.Fatalf("report has no route %s: %+v", route, rep.Routes)
	}
	return r
}

// With a secondary configured, a route whose answers carry a random
// request id and timestamp on every side shows raw mismatches but a
// noise-filtered mismatch rate of zero, with both paths listed as
// suppressed noise; the real field change on /api/orders/{id} still counts,
// as one diff class whose stored examples are redacted.
func TestNoiseCancelled(t *testing.T) {
	s := startStack(t, wrapShadow(stampResponses))
	l := s.createLaunchWith(map[string]any{"shadow_url": s.shadow.URL, "secondary_url": s.secondary.URL, "sample_percent": 100})
	if l.SecondaryURL != s.secondary.URL {
		t.Fatalf("created launch %+v lacks the secondary", l)
	}
	probes := s.waitMirrorSees()
	const n = 60
	for i := range n {
		if code, _, body := s.send("GET", "/api/status", nil); code != 200 || !strings.Contains(string(body), `"request_id"`) {
			t.Fatalf("/api/status through the mirror: %d %s", code, body)
		}
		code, _, _ := s.do(s.mirror.Addr(), "GET", fmt.Sprintf("/api/orders/%d", i+1), nil, "Authorization", "Bearer e2e-secret-token")
		if code != 200 {
			t.Fatalf("/api/orders through the mirror: %d", code)
		}
	}
	st := s.drained()
	mirrored := 2*n + probes
	if st.Published != mirrored {
		t.Fatalf("mirror published %d, want %d", st.Published, mirrored)
	}
	s.waitRows(l.ID, mirrored)
	if hits := s.secondaryHits.Load(); hits < int64(mirrored) {
		t.Fatalf("the secondary got %d requests for %d mirrored", hits, mirrored)
	}

	var rep api.Report
	s.apiOK("GET", "/v1/launches/"+l.ID+"/report", nil, http.StatusOK, &rep)
	if rep.Totals.Compared != mirrored || rep.Totals.WithSecondary != mirrored || rep.Totals.ShadowErrors != 0 {
		t.Fatalf("totals %+v: want %d compared, all with a secondary, no shadow error", rep.Totals, mirrored)
	}
	status := routeOf(t, &rep, "/api/status")
	if status.Compared != n || status.RawMismatches != n || status.Mismatches != 0 {
		t.Errorf("/api/status: %d compared, %d raw mismatches, %d after noise; want %d, %d, 0", status.Compared,
			status.RawMismatches, status.Mismatches, n, n)
	}
	orders := routeOf(t, &rep, "/api/orders/{id}")
	if orders.Compared != n || orders.RawMismatches != n || orders.Mismatches != n {
		t.Errorf("/api/orders/{id}: %d compared, %d raw, %d after noise; want all %d", orders.Compared, orders.RawMismatches, orders.Mismatches, n)
	}
	if rep.Totals.Mismatches != n || rep.Totals.RawMismatches != 2*n {
		t.Errorf("totals: %d mismatches, %d raw; want %d and %d", rep.Totals.Mismatches, rep.Totals.RawMismatches, n, 2*n)
	}
	var suppressed []string
	for _, p := range rep.Noise.Suppressed {
		suppressed = append(suppressed, p.Route+" "+p.Path)
		if p.Raw != n || p.Noisy != n || p.Reason == "" {
			t.Errorf("suppressed %+v: want %d of %d noisy, with a reason", p, n, n)
		}
	}
	slices.Sort(suppressed)
	if want := []string{"/api/status $.generated_at", "/api/status $.request_id"}; !slices.Equal(suppressed, want) {
		t.Errorf("suppressed noise %v, want %v", suppressed, want)
	}
	diffs := map[string][2]uint64{}
	for _, d := range rep.Diffs {
		diffs[d.Path+" "+d.Kind] = [2]uint64{d.Count, d.Noisy}
	}
	for want, c := range map[string][2]uint64{
		"$.request_id value_changed": {n, n}, "$.generated_at value_changed": {n, n},
		"$.total type_changed": {n, 0}, "$.currency missing_field": {n, 0},
	} {
		if diffs[want] != c {
			t.Errorf("diff %s: (count, noisy) %v, want %v (all: %v)", want, diffs[want], c, diffs)
		}
	}

	// One class: the orders regression, on every orders pair.
	if len(rep.Classes) != 1 {
		t.Fatalf("classes %+v, want the orders regression only", rep.Classes)
	}
	c := rep.Classes[0]
	wantDiffs := []api.PathKind{{Path: "$.currency", Kind: "missing_field"}, {Path: "$.total", Kind: "type_changed"}}
	if c.Route != "/api/orders/{id}" || c.Count != n || c.ShareOfRoute != 1 || !slices.Equal(c.Diffs, wantDiffs) ||
		len(c.Fingerprint) != 16 || c.FirstSeen.IsZero() || c.LastSeen.Before(c.FirstSeen) {
		t.Errorf("class %+v, want %d of /api/orders/{id} with %v", c, n, wantDiffs)
	}
	// The examples of a class are written beside its rows; poll for them.
	var ex api.ExampleList
	testenv.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		s.apiOK("GET", "/v1/launches/"+l.ID+"/examples/"+c.Fingerprint, nil, http.StatusOK, &ex)
		if len(ex.Examples) == 0 {
			return fmt.Errorf("no stored example of class %s yet", c.Fingerprint)
		}
		return nil
	})
	if len(ex.Examples) > 3 {
		t.Errorf("%d examples stored for one class, want at most 3", len(ex.Examples))
	}
	for _, x := range ex.Examples {
		all := string(x.Request.Headers) + x.Request.Body + string(x.Primary.Headers) + x.Primary.Body + string(x.Shadow.Headers) + x.Shadow.Body
		if x.Route != "/api/orders/{id}" || x.Primary.Status != 200 || x.Shadow.Status != 200 ||
			!strings.Contains(x.Primary.Body, `"currency"`) || strings.Contains(all, "e2e-secret-token") ||
			!strings.Contains(string(x.Request.Headers), "Authorization") {
			t.Errorf("example %+v (request headers %s): want an orders pair with Authorization masked", x, x.Request.Headers)
		}
	}
}

// An ignore rule added by PATCH applies to pairs compared after the
// comparator saw it, without a restart: orders pairs match from the
// revision of the PATCH on, and mismatched before it.
func TestIgnoreRuleByPatch(t *testing.T) {
	s := startStack(t)
	l := s.createLaunchWith(map[string]any{"shadow_url": s.shadow.URL, "sample_percent": 100})
	probes := s.waitMirrorSees()
	for i := range 20 {
		s.send("GET", fmt.Sprintf("/api/orders/%d", i+1), nil)
	}
	s.drained()
	s.waitRows(l.ID, 20+probes)
	if n := s.rows(l.ID, "route = '/api/orders/{id}' AND match = 0"); n != 20 {
		t.Fatalf("%d of 20 orders pairs mismatched before the rule, want all", n)
	}

	var patched launch.Launch
	s.apiOK("PATCH", "/v1/launches/"+l.ID, map[string]any{"compare": map[string]any{"ignore_paths": []string{"$.total", "$.currency"}}},
		http.StatusOK, &patched)
	if patched.Revision <= l.Revision {
		t.Fatalf("PATCH revision %d, created at %d", patched.Revision, l.Revision)
	}
	after := fmt.Sprintf("route = '/api/orders/{id}' AND rules_revision >= %d", patched.Revision)
	i := 20
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for range 5 {
			i++
			s.send("GET", fmt.Sprintf("/api/orders/%d", i), nil)
		}
		if n := s.rows(l.ID, after); n < 10 {
			return fmt.Errorf("%d orders pairs compared under revision %d yet", n, patched.Revision)
		}
		return nil
	})
	s.drained()
	s.waitRows(l.ID, uint64(i)+probes)
	if n := s.rows(l.ID, after+" AND match = 0"); n != 0 {
		t.Fatalf("%d orders pairs compared under the rule still mismatch", n)
	}
	if n := s.rows(l.ID, "route = '/api/orders/{id}' AND rules_revision < "+fmt.Sprint(patched.Revision)+" AND match = 1"); n != 0 {
		t.Fatalf("%d orders pairs compared before the rule match", n)
	}
	var rep api.Report
	s.apiOK("GET", "/v1/launches/"+l.ID+"/report", nil, http.StatusOK, &rep)
	orders := routeOf(t, &rep, "/api/orders/{id}")
	before := s.rows(l.ID, "route = '/api/orders/{id}' AND rules_revision < "+fmt.Sprint(patched.Revision))
	if orders.Compared != uint64(i) || orders.Mismatches != before || orders.RawMismatches != before {
		t.Fatalf("report orders %+v: want %d compared, %d mismatched (those before the rule)", orders, i, before)
	}
}
