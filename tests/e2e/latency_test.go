package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// tiny answers at once: a sub-millisecond endpoint on loopback.
func tiny() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
}

// TestLatencyJudgedAgainstSecondary (issue 12, point 3): the verdict
// compares the shadow's latency with the secondary's (both timed by the
// runner) when a secondary answers. A sub-millisecond A/A launch, shadow
// and secondary the same fast server as the primary's version, passes;
// the same launch with a shadow 5 ms slower fails on latency, judged
// against the secondary. The report shows the secondary's latency.
func TestLatencyJudgedAgainstSecondary(t *testing.T) {
	const pairs = 300
	run := func(t *testing.T, shadow http.Handler) (api.Verdict, api.Report) {
		t.Helper()
		s := startStack(t, wrapPrimary(func(http.Handler) http.Handler { return tiny() }))
		same := httptest.NewServer(tiny())
		t.Cleanup(same.Close)
		shadowURL := same.URL
		if shadow != nil {
			sh := httptest.NewServer(shadow)
			t.Cleanup(sh.Close)
			shadowURL = sh.URL
		}
		l := s.createLaunchWith(map[string]any{"shadow_url": shadowURL, "secondary_url": same.URL, "sample_percent": 100,
			"gates": map[string]any{"min_pairs": 200}})
		probes := s.waitMirrorSees()
		for i := range pairs {
			if code, _, body := s.send("GET", fmt.Sprintf("/api/users/%d", i), nil); code != 200 {
				t.Fatalf("through the mirror: %d %s", code, body)
			}
		}
		s.drained()
		s.waitRows(l.ID, pairs+probes)
		var v api.Verdict
		testenv.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
			s.apiOK("GET", "/v1/launches/"+l.ID+"/verdict", nil, http.StatusOK, &v)
			if v.Window.Pairs != pairs+probes {
				return fmt.Errorf("verdict on %d pairs, want %d", v.Window.Pairs, pairs+probes)
			}
			return nil
		})
		return v, s.report(l.ID)
	}
	checks := func(v api.Verdict) map[string]api.Check {
		m := map[string]api.Check{}
		for _, c := range v.Checks {
			m[c.Name] = c
		}
		return m
	}

	t.Run("sub-millisecond A/A passes", func(t *testing.T) {
		v, rep := run(t, nil)
		if v.Verdict != api.VerdictPass || v.Window.LatencyControl != api.ControlSecondary || v.Gates.MinLatencyDeltaMS != 1 {
			t.Fatalf("verdict %s against the %q (gates %+v): %q", v.Verdict, v.Window.LatencyControl, v.Gates, v.Reasons)
		}
		sec := rep.LatencyMS.Secondary
		if sec == nil || rep.Totals.WithSecondary != rep.Totals.Compared || rep.Totals.Mismatches != 0 {
			t.Fatalf("report totals %+v, secondary latency %v", rep.Totals, sec)
		}
		// Sub-millisecond: what the floor is for.
		if rep.LatencyMS.Shadow.P50 >= 1 || sec.P50 >= 1 {
			t.Logf("not a sub-millisecond run on this loaded machine: shadow p50 %v ms, secondary p50 %v ms", rep.LatencyMS.Shadow.P50, sec.P50)
		}
	})

	t.Run("a shadow 5 ms slower fails against the secondary", func(t *testing.T) {
		v, rep := run(t, takeAtLeast(5*time.Millisecond, tiny()))
		c := checks(v)
		if v.Verdict != api.VerdictFail || v.Window.LatencyControl != api.ControlSecondary || c[api.CheckLatencyRegression].OK || c[api.CheckLatencyRatioP50].OK ||
			!strings.Contains(strings.Join(v.Reasons, " | "), "slower than the secondary") {
			t.Fatalf("verdict %s against the %q, checks %+v: %q", v.Verdict, v.Window.LatencyControl, v.Checks, v.Reasons)
		}
		if sec := rep.LatencyMS.Secondary; sec == nil || rep.LatencyMS.Shadow.P50 < 5 || rep.LatencyMS.Shadow.P50-sec.P50 < 4 {
			t.Fatalf("report latency %+v (secondary %v): want the shadow 5 ms over the secondary", rep.LatencyMS, sec)
		}
	})
}
