package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// randInt is a random number in [0, n).
func randInt(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		panic(err)
	}
	return v.Int64()
}

// detectRoutes answers /detect/* in front of the demo as one version of a
// service whose answers carry per-instance noise (a random client
// address, request id and time, CSP nonce) in every version:
//
//   - /detect/whoami: JSON, {"client": "10.x.y.z:port", ...}; the new
//     version writes the client without its port when the query has an
//     even i (issue 12's missed change), so the path is noise in the other
//     pairs;
//   - /detect/events: NDJSON, one event per line with a random time; the
//     new version reports the third event "retrying" instead of "ok";
//   - /detect/headers: JSON with a charset and security headers; the new
//     version changes the charset, drops X-Content-Type-Options and
//     shortens Strict-Transport-Security.
//
// Every answer is immediate: the endpoints are sub-millisecond.
func detectRoutes(newVersion bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			now := func() string { return time.Now().UTC().Format(time.RFC3339Nano) }
			switch r.URL.Path {
			case "/detect/whoami":
				client := fmt.Sprintf("10.%d.%d.%d", randInt(256), randInt(256), randInt(256))
				i, _ := strconv.Atoi(r.URL.Query().Get("i"))
				if !newVersion || i%2 == 1 {
					client += ":" + strconv.FormatInt(1024+randInt(64000), 10)
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"client":%q,"request_id":%q,"served_at":%q,"ok":true}`, client, rand.Text(), now())
			case "/detect/events":
				w.Header().Set("Content-Type", "application/x-ndjson")
				for i := range 4 {
					state := "ok"
					if newVersion && i == 2 {
						state = "retrying"
					}
					fmt.Fprintf(w, "{\"seq\":%d,\"at\":%q,\"state\":%q}\n", i, now(), state)
				}
			case "/detect/headers":
				h := w.Header()
				h.Set("Content-Type", "application/json; charset=utf-8")
				h.Set("X-Content-Type-Options", "nosniff")
				h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
				h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'nonce-"+rand.Text()+"'")
				if newVersion {
					h.Set("Content-Type", "application/json; charset=iso-8859-1")
					h.Del("X-Content-Type-Options")
					h.Set("Strict-Transport-Security", "max-age=60")
				}
				fmt.Fprint(w, `{"ok":true}`)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
}

// sendDetect sends n requests to each route through the mirror.
func (s *stack) sendDetect(n int, routes ...string) {
	s.t.Helper()
	for i := range n {
		for _, route := range routes {
			if code, _, body := s.send("GET", fmt.Sprintf("%s?i=%d", route, i), nil); code != 200 {
				s.t.Fatalf("%s through the mirror: %d %s", route, code, body)
			}
		}
	}
}

func diffCount(rep *api.Report, path, kind string) (api.DiffCount, bool) {
	for _, d := range rep.Diffs {
		if d.Path == path && d.Kind == kind {
			return d, true
		}
	}
	return api.DiffCount{}, false
}

func suppressedPath(rep *api.Report, route, path string) bool {
	return slices.ContainsFunc(rep.Noise.Suppressed, func(p api.SuppressedPath) bool { return p.Route == route && p.Path == path })
}

// A launch from a version whose client address is random (noise on every
// pair, suppressed) to one that drops the port in half the answers: those
// pairs are real format_changed mismatches that the noise suppression of
// $.client does not hide; a change inside an NDJSON stream whose every
// line carries noise is found line by line; darkctl report lists each
// class with a before → after from its example.
func TestDetectFormatChangeOnNoisyPath(t *testing.T) {
	old, new := detectRoutes(false), detectRoutes(true)
	s := startStack(t, wrapPrimary(old), wrapSecondary(old), wrapShadow(new))
	l := s.createLaunchWith(map[string]any{"shadow_url": s.shadow.URL, "secondary_url": s.secondary.URL, "sample_percent": 100})
	probes := s.waitMirrorSees()
	const n = 30
	s.sendDetect(n, "/detect/whoami", "/detect/events")
	s.drained()
	s.waitRows(l.ID, 2*n+probes)

	rep := s.report(l.ID)
	whoami, events := routeOf(t, &rep, "/detect/whoami"), routeOf(t, &rep, "/detect/events")
	if whoami.Compared != n || whoami.WithSecondary != n || whoami.RawMismatches != n || whoami.Mismatches != n/2 {
		t.Errorf("/detect/whoami %+v: want %d compared with a secondary, all raw mismatches (noise), %d real ones (the port dropped)", whoami, n, n/2)
	}
	if !suppressedPath(&rep, "/detect/whoami", "$.client") || !suppressedPath(&rep, "/detect/whoami", "$.request_id") {
		t.Errorf("the client address and request id are not suppressed as noise: %+v", rep.Noise.Suppressed)
	}
	fc := compare.FormatChangedPath("$.client", compare.StringShape("10.0.0.1:80"), compare.StringShape("10.0.0.1"))
	if d, ok := diffCount(&rep, fc, compare.KindFormatChanged); !ok || d.Count != n/2 || d.Noisy != 0 {
		t.Errorf("format change %q: %+v (found %v), want %d, none noisy; diffs %+v", fc, d, ok, n/2, rep.Diffs)
	}
	if events.Compared != n || events.Mismatches != n {
		t.Errorf("/detect/events %+v: want every one of %d pairs a real mismatch", events, n)
	}
	if d, ok := diffCount(&rep, "$[*].state", compare.KindValueChanged); !ok || d.Count != n || d.Noisy != 0 {
		t.Errorf("NDJSON change $[*].state: %+v (found %v); diffs %+v", d, ok, rep.Diffs)
	}
	if !suppressedPath(&rep, "/detect/events", "$[*].at") {
		t.Errorf("the events' times are not suppressed as noise: %+v", rep.Noise.Suppressed)
	}
	if n := s.rows(l.ID, "route = '/detect/events' AND body_format = 'ndjson'"); n != 30 {
		t.Errorf("%d events pairs compared as ndjson, want 30", n)
	}
	classes := map[string]api.DiffClass{}
	for _, c := range rep.Classes {
		classes[c.Route] = c
	}
	if c := classes["/detect/whoami"]; len(rep.Classes) != 2 || !slices.Equal(c.Diffs, []api.PathKind{{Path: fc, Kind: compare.KindFormatChanged}}) || c.Count != n/2 {
		t.Fatalf("classes %+v", rep.Classes)
	}
	testenv.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		for _, c := range s.report(l.ID).Classes {
			if len(c.Examples) == 0 {
				return fmt.Errorf("class %s of %s has no example yet", c.Fingerprint, c.Route)
			}
		}
		return nil
	})

	d := buildDarkctl(t, s)
	out, errOut, code := d.run("report", l.ID)
	if code != 0 || errOut != "" {
		t.Fatalf("darkctl report: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Diff classes: 2",
		fc + "  format_changed  \"10.",
		`(string/ip:port) → "10.`,
		`" (string/ipv4)`,
		`$[*].state  value_changed  "ok" → "retrying"`,
	} {
		if !strings.Contains(squeeze(out), want) {
			t.Errorf("darkctl report lacks %q:\n%s", want, out)
		}
	}
}

// squeeze writes runs of spaces (table columns) as two.
func squeeze(s string) string {
	for strings.Contains(s, "   ") {
		s = strings.ReplaceAll(s, "   ", "  ")
	}
	return s
}

// Content-Type parameters and security headers are compared only when the
// launch opts in: the new version's charset, dropped nosniff and shorter
// HSTS match under the defaults, and mismatch from the revision of the
// PATCH that opts in on; the random CSP nonce never counts.
func TestDetectHeaderOptIns(t *testing.T) {
	old, new := detectRoutes(false), detectRoutes(true)
	s := startStack(t, wrapPrimary(old), wrapSecondary(old), wrapShadow(new))
	l := s.createLaunchWith(map[string]any{"shadow_url": s.shadow.URL, "sample_percent": 100})
	probes := s.waitMirrorSees()
	const n = 10
	s.sendDetect(n, "/detect/headers")
	s.drained()
	s.waitRows(l.ID, n+probes)
	if m := s.rows(l.ID, "route = '/detect/headers' AND match = 0"); m != 0 {
		t.Fatalf("%d header pairs mismatch under the default rules", m)
	}

	var patched launch.Launch
	s.apiOK("PATCH", "/v1/launches/"+l.ID, map[string]any{"compare": map[string]any{"content_type_params": true, "security_headers": true}},
		http.StatusOK, &patched)
	if !patched.Compare.ContentTypeParams || !patched.Compare.SecurityHeaders || patched.Revision <= l.Revision {
		t.Fatalf("PATCH gave %+v", patched)
	}
	after := fmt.Sprintf("route = '/detect/headers' AND rules_revision >= %d", patched.Revision)
	sent := n
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		s.sendDetect(1, "/detect/headers")
		sent++
		if m := s.rows(l.ID, after); m < n {
			return fmt.Errorf("%d header pairs compared under revision %d yet", m, patched.Revision)
		}
		return nil
	})
	s.drained()
	s.waitRows(l.ID, uint64(sent)+probes)
	opted := s.rows(l.ID, after)
	want := []string{"header.Content-Type", "header.Strict-Transport-Security", "header.X-Content-Type-Options"}
	if m := s.rows(l.ID, after+" AND match = 0 AND content_type_match = 1 AND headers_match = 0 AND diff_paths = ['"+strings.Join(want, "','")+"']"); m != opted {
		t.Errorf("%d of %d header pairs under the opt-in show exactly %v", m, opted, want)
	}
	rep := s.report(l.ID)
	if h := routeOf(t, &rep, "/detect/headers"); h.Mismatches != opted {
		t.Errorf("/detect/headers %+v: want the %d pairs compared under the opt-in as mismatches", h, opted)
	}
	if _, ok := diffCount(&rep, "header.Content-Security-Policy", compare.KindHeader); ok {
		t.Errorf("a CSP that differs only by its nonce counts: %+v", rep.Diffs)
	}
}

// An A/A launch of a sub-millisecond service (the same version as
// primary, secondary and shadow) whose answers carry noise of every kind
// the detection looks at (random addresses, ids, RFC3339Nano times that
// drop trailing zeros, NDJSON lines, CSP nonces), with every opt-in on:
// many raw differences, all noise, and no mismatch, format_changed
// included.
func TestDetectAASubMillisecond(t *testing.T) {
	same := detectRoutes(false)
	s := startStack(t, wrapPrimary(same), wrapSecondary(same), wrapShadow(same))
	l := s.createLaunchWith(map[string]any{"shadow_url": s.shadow.URL, "secondary_url": s.secondary.URL, "sample_percent": 100,
		"compare": map[string]any{"content_type_params": true, "security_headers": true}})
	probes := s.waitMirrorSees()
	const n = 100
	routes := []string{"/detect/whoami", "/detect/events", "/detect/headers"}
	s.sendDetect(n, routes...)
	s.drained()
	s.waitRows(l.ID, uint64(len(routes)*n)+probes)

	rep := s.report(l.ID)
	if rep.Totals.Mismatches != 0 || rep.Totals.RawMismatches < 2*n || len(rep.Classes) != 0 {
		t.Errorf("A/A totals %+v, classes %+v: want raw mismatches from the noise and no mismatch", rep.Totals, rep.Classes)
	}
	if m := s.rows(l.ID, "has(diff_kinds, 'format_changed')"); m != 0 {
		data, _ := json.Marshal(rep.Diffs)
		t.Errorf("%d A/A pairs with a format change: %s", m, data)
	}
	if m := s.rows(l.ID, "has_secondary = 0"); m != 0 {
		t.Errorf("%d pairs without a secondary", m)
	}
}
