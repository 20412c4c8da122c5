package reporter_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/reporter"
)

// bearer is the Authorization header of a token of testTokens.
func bearer(scope string) []string { return []string{"Authorization", "Bearer " + testTokens[scope]} }

// TestAuthentication: on a real reporter, anonymous requests and unknown
// tokens get 401 with WWW-Authenticate, a token of too small a scope 403,
// each with the JSON error; each scope may do what docs/api.md says, and
// the audit log names the token.
func TestAuthentication(t *testing.T) {
	e := startEnv(t, envOptions{})
	l := e.create("guarded", 5)
	path := "/v1/launches/" + l.ID

	t.Run("401 without a valid token", func(t *testing.T) {
		for name, auth := range map[string]string{
			"none": "", "unknown token": "Bearer not-a-token-of-the-file", "empty bearer": "Bearer ",
			"basic": "Basic YWRtaW46YWRtaW4=", "digest of the admin token": "Bearer sha256:" + strings.Repeat("0", 64),
		} {
			for _, req := range [][2]string{{"GET", "/v1/launches"}, {"GET", path + "/report"}, {"POST", path + "/rollback"}, {"POST", "/v1/launches"}} {
				res, data := e.do(req[0], req[1], nil, "Authorization", auth)
				checkError(t, res, data, http.StatusUnauthorized, "token")
				if got := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Fatalf("%s %s with %s: WWW-Authenticate %q", req[0], req[1], name, got)
				}
			}
		}
		var got launch.Launch
		e.ok(http.StatusOK, "GET", path, nil, &got)
		if got.Status != launch.StatusActive {
			t.Fatalf("an anonymous rollback went through: %s", got.Status)
		}
	})

	t.Run("read", func(t *testing.T) {
		for _, p := range []string{"/v1/launches", path, path + "/report", path + "/verdict", path + "/examples/0123456789abcdef"} {
			if res, data := e.do("GET", p, nil, bearer("read")...); res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s with a read token: %d %s", p, res.StatusCode, data)
			}
		}
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "http://s"}},
			{"PATCH", path, map[string]any{"sample_percent": 1}},
			{"POST", path + "/pause", nil},
			{"POST", path + "/rollback", nil},
			{"POST", path + "/promote", nil},
		} {
			res, data := e.do(c.method, c.path, c.body, bearer("read")...)
			checkError(t, res, data, http.StatusForbidden, `token "read" has scope read`)
		}
	})

	t.Run("operate", func(t *testing.T) {
		var got launch.Launch
		for _, c := range []struct {
			method, path string
			body         any
			want         launch.Status
		}{
			{"PATCH", path, map[string]any{"sample_percent": 20, "reason": "more"}, launch.StatusActive},
			{"POST", path + "/pause", map[string]any{"reason": "look"}, launch.StatusPaused},
			{"POST", path + "/resume", nil, launch.StatusActive},
		} {
			res, data := e.do(c.method, c.path, c.body, bearer("operate")...)
			if res.StatusCode != http.StatusOK || json.Unmarshal(data, &got) != nil || got.Status != c.want {
				t.Fatalf("%s %s with an operate token: %d %s", c.method, c.path, res.StatusCode, data)
			}
		}
		if got.SamplePercent != 20 {
			t.Fatalf("sample_percent %v after the operator's patch", got.SamplePercent)
		}
		// What sends traffic elsewhere, or live users to the new version,
		// is an admin's: the PATCH's fields decide, not its route.
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"PATCH", path, map[string]any{"shadow_url": "http://elsewhere:1"}},
			{"PATCH", path, map[string]any{"sample_percent": 30, "name": "renamed"}},
			{"PATCH", path, map[string]any{"compare": map[string]any{}}},
			{"PATCH", path, map[string]any{"ramp": map[string]any{"steps": []map[string]any{{"percent": 1, "hold": "1m"}}}}},
			{"PATCH", path, map[string]any{"gates": map[string]any{"min_pairs": 1}}},
			{"POST", path + "/promote", nil},
			{"POST", "/v1/launches", map[string]any{"name": "x", "shadow_url": "http://s"}},
		} {
			res, data := e.do(c.method, c.path, c.body, bearer("operate")...)
			checkError(t, res, data, http.StatusForbidden, "scope operate", "needs admin")
		}
		e.ok(http.StatusOK, "GET", path, nil, &got)
		if got.ShadowURL != l.ShadowURL || got.Name != l.Name || got.SamplePercent != 20 || got.Ramp != nil {
			t.Fatalf("refused patches changed the launch: %+v", got)
		}
	})

	t.Run("admin", func(t *testing.T) {
		e.ok(http.StatusOK, "PATCH", path, map[string]any{"shadow_url": "http://shadow-2.internal:8080"}, nil)
		e.ok(http.StatusOK, "POST", path+"/promote", nil, nil)
	})

	t.Run("audit names the token", func(t *testing.T) {
		a := e.waitAudit(l.ID, 6)
		var got []string
		for _, x := range a {
			got = append(got, x.Action+" by "+x.Actor)
		}
		want := []string{analytics.AuditPromoted + " by admin", analytics.AuditPatched + " by admin", analytics.AuditResumed + " by operate",
			analytics.AuditPaused + " by operate", analytics.AuditPatched + " by operate", analytics.AuditCreated + " by admin"}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Fatalf("audit %q, want %q", got, want)
		}
	})

	t.Run("open routes", func(t *testing.T) {
		// Health, metrics and the dashboard page need no token.
		for _, u := range []string{e.base + "/healthz", e.base + "/", e.admin + "/healthz", e.admin + "/metrics"} {
			if res, _ := request(t, "GET", u, nil); res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s without a token: %d", u, res.StatusCode)
			}
		}
		testenv.WantMetrics(t, e.svc.AdminAddr(), `darklaunch_reporter_auth_failures_total{reason="token"}`, `darklaunch_reporter_auth_failures_total{reason="scope"}`)
	})
}

// TestTokensFile: the reporter does not start on a tokens file it cannot
// use, and says which line is wrong; nor without one, unless
// REPORTER_AUTH=off is set explicitly.
func TestTokensFile(t *testing.T) {
	cfg := reporter.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"}
	cfg.RedisURL = "redis://127.0.0.1:1/0"
	newWith := func(c reporter.Config) error {
		svc, err := reporter.New(c, testenv.Logger(t, slog.LevelError))
		if err == nil {
			testenv.Run(t, svc.Run)
			t.Fatalf("the reporter started with %+v", c)
		}
		return err
	}
	err := newWith(cfg)
	if err == nil || !strings.Contains(err.Error(), "REPORTER_TOKENS_FILE is not set") || !strings.Contains(err.Error(), "REPORTER_AUTH=off") {
		t.Fatalf("no tokens file: %v", err)
	}
	bad := cfg
	bad.Auth = "maybe"
	if err := newWith(bad); err == nil || !strings.Contains(err.Error(), "REPORTER_AUTH") {
		t.Fatalf("REPORTER_AUTH=maybe: %v", err)
	}
	good := "# ok\nci operate 0123456789abcdef0123\n"
	for _, c := range []struct{ file, want string }{
		{good + "deploy admin\n", "line 3: has 2 fields, want 3"},
		{good + "deploy root 0123456789abcdef-root\n", `line 3: scope "root" is not one of read, operate, admin`},
		{good + "deploy admin short\n", `line 3: token of "deploy" is shorter than 16 characters`},
		{good + "deploy admin sha256:abc\n", "line 3: token of \"deploy\": sha256: must be followed by 64 hex digits"},
		{good + "ci read another-token-of-ci-123\n", `line 3: name "ci" is already used on line 2`},
		{good + "\n\nother read 0123456789abcdef0123 # again\n", `line 5: the token of "other" is the one of line 2`},
		{"bad:name read 0123456789abcdef0123\n", `line 1: name "bad:name"`},
		{"# nothing\n\n", "holds no token"},
	} {
		path := filepath.Join(t.TempDir(), "tokens")
		if err := os.WriteFile(path, []byte(c.file), 0o600); err != nil {
			t.Fatal(err)
		}
		withFile := cfg
		withFile.TokensFile = path
		if err := newWith(withFile); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("tokens file %q: %v, want an error naming the file and %q", c.file, err, c.want)
		}
	}
	missing := cfg
	missing.TokensFile = filepath.Join(t.TempDir(), "absent")
	if err := newWith(missing); err == nil || !strings.Contains(err.Error(), "REPORTER_TOKENS_FILE") {
		t.Fatalf("missing tokens file: %v", err)
	}
	both := cfg
	both.Auth, both.TokensFile = "off", missing.TokensFile
	if err := newWith(both); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Fatalf("REPORTER_AUTH=off with a tokens file: %v", err)
	}
}

// TestAuthOff: with REPORTER_AUTH=off set explicitly the reporter runs
// without tokens, and says so in its log and in /healthz on both of its
// addresses; the audit log then names the TCP peer.
func TestAuthOff(t *testing.T) {
	js := testenv.StartJetStream(t)
	cfg := newUnreachableConfig(t, js)
	cfg.ClickHouseAddr = testenv.StartClickHouse(t)
	cfg.TokensFile, cfg.Auth = "", "off"
	var logs testenv.Buffer
	svc, err := reporter.New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, svc.Run)
	e := &env{t: t, svc: svc, base: "http://" + svc.Addr(), admin: "http://" + svc.AdminAddr(), token: "ignored"}
	if !strings.Contains(logs.String(), "authentication is off") {
		t.Fatalf("no warning in the log: %s", logs.String())
	}
	for _, u := range []string{e.base, e.admin} {
		var rep admin.HealthReport
		testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
			res, data := request(t, "GET", u+"/healthz", nil)
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("healthz %d: %s", res.StatusCode, data)
			}
			return jsonUnmarshal(data, &rep)
		})
		if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "authentication is off") || rep.Status != "ok" {
			t.Fatalf("%s/healthz: %+v, want status ok and the warning", u, rep)
		}
	}
	var l launch.Launch
	res, data := request(t, "POST", e.base+"/v1/launches", map[string]any{"name": "open", "shadow_url": "http://s"})
	if res.StatusCode != http.StatusCreated || json.Unmarshal(data, &l) != nil {
		t.Fatalf("anonymous create with auth off: %d %s", res.StatusCode, data)
	}
	if a := e.waitAudit(l.ID, 1); !strings.HasPrefix(a[0].Actor, "api:127.0.0.1:") {
		t.Fatalf("audit actor %q, want api:<peer>", a[0].Actor)
	}
}
