package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/mirror"
)

// recordAuth is a shadow wrapper that keeps the credentials each replay
// carried.
type recordAuth struct {
	mu   sync.Mutex
	seen []string
}

func (ra *recordAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ra.mu.Lock()
		ra.seen = append(ra.seen, r.Header.Get("Authorization")+"|"+r.Header.Get("Cookie")+"|"+r.Header.Get("X-Api-Key"))
		ra.mu.Unlock()
		w.Header().Set("Set-Cookie", "shadow-session="+r.Header.Get("X-Api-Key"))
		next.ServeHTTP(w, r)
	})
}

// echoCredentials answers GET /api/echo, as a debug endpoint might, with
// the request's cookies, Authorization and X-Api-Key in a JSON body and
// the session cookie in a header; other requests go to next.
func echoCredentials(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/echo" {
			next.ServeHTTP(w, r)
			return
		}
		cookies := map[string]string{}
		for _, c := range r.Cookies() {
			cookies[c.Name] = c.Value
		}
		if c, err := r.Cookie("session"); err == nil {
			w.Header().Set("X-Debug-Session", c.Value)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"cookies": cookies, "authorization": r.Header.Get("Authorization"),
			"api_key_seen": r.Header.Get("X-Api-Key"), "note": "debug echo"})
	})
}

// filesContaining lists the files under dir holding any of the needles.
func filesContaining(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(data, []byte(n)) {
				found = append(found, fmt.Sprintf("%s holds %q", path, n))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// tablesContaining lists the ClickHouse String and Array(String) columns
// of the darklaunch database holding any of the needles.
func (s *stack) tablesContaining(needles ...string) []string {
	s.t.Helper()
	ctx := context.Background()
	rows, err := s.ch.Query(ctx, "SELECT table, name, type FROM system.columns WHERE database = 'darklaunch'")
	if err != nil {
		s.t.Fatal(err)
	}
	type column struct{ table, name, typ string }
	var cols []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.table, &c.name, &c.typ); err != nil {
			s.t.Fatal(err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	var found []string
	checked := 0
	for _, c := range cols {
		for _, n := range needles {
			var cond string
			switch c.typ {
			case "String", "Nullable(String)":
				cond = fmt.Sprintf("position(ifNull(%s, ''), ?) > 0", c.name)
			case "Array(String)":
				cond = fmt.Sprintf("arrayExists(x -> position(x, ?) > 0, %s)", c.name)
			default:
				continue
			}
			checked++
			var count uint64
			q := fmt.Sprintf("SELECT count() FROM darklaunch.%s WHERE %s", c.table, cond)
			if err := s.ch.QueryRow(ctx, q, n).Scan(&count); err != nil {
				s.t.Fatalf("%s: %v", q, err)
			}
			if count > 0 {
				found = append(found, fmt.Sprintf("%s.%s holds %q in %d rows", c.table, c.name, n, count))
			}
		}
	}
	if checked == 0 {
		s.t.Fatal("no String column found to check")
	}
	return found
}

// Credentials sent by clients, and the replacement credential of a
// capture policy, reach the shadow in clear but are stored in clear
// neither in the JetStream store nor in any ClickHouse table.
func TestCredentialsAreNotStoredInClear(t *testing.T) {
	var ra recordAuth
	// The primary and the shadow echo the credentials back on /api/echo:
	// the echoes are masked at capture, in the tap and in the runner.
	s := startStack(t, wrapShadow(func(h http.Handler) http.Handler { return ra.wrap(echoCredentials(h)) }),
		wrapPrimary(echoCredentials))
	token, cookie, apiKey, shadowKey := "tok-"+rand.Text(), "sid-"+rand.Text(), "key-"+rand.Text(), "shadowkey-"+rand.Text()
	l := s.createLaunchWith(map[string]any{"shadow_url": s.shadow.URL, "sample_percent": 100,
		"capture": map[string]any{"replace_headers": map[string]string{"X-Api-Key": shadowKey}}})
	// The API never shows the policy's secret.
	if got := l.Capture.ReplaceHeaders["X-Api-Key"]; got != launch.RedactedHeaderValue {
		t.Fatalf("create answered the replacement as %q", got)
	}
	if _, body := s.api("GET", "/v1/launches/"+l.ID, nil); strings.Contains(string(body), shadowKey) {
		t.Fatalf("GET shows the replacement: %s", body)
	}
	probes := s.waitMirrorSees()
	const n = 20
	for i := range n {
		path := fmt.Sprintf("/api/users/%d", i+1)
		if i%2 == 0 {
			path = "/api/echo"
		}
		code, _, body := s.do(s.mirror.Addr(), "GET", path, nil,
			"Authorization", "Bearer "+token, "Cookie", "session="+cookie, "X-Api-Key", apiKey)
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		if path == "/api/echo" && (!strings.Contains(string(body), cookie) || !strings.Contains(string(body), apiKey)) {
			t.Fatalf("the client did not get the primary's echo: %s", body)
		}
	}
	st := s.drained()
	s.waitRows(l.ID, st.Published)
	if st.Published != n+probes {
		t.Fatalf("published %d, want %d", st.Published, n+probes)
	}

	// The shadow got the user's credentials, and the policy's key instead
	// of the user's.
	ra.mu.Lock()
	want := "Bearer " + token + "|session=" + cookie + "|" + shadowKey
	got := 0
	for _, v := range ra.seen {
		if v == want {
			got++
		}
	}
	ra.mu.Unlock()
	if got != n {
		t.Fatalf("%d of %d replays carried %q", got, n, want)
	}
	// The primary echoed the client's credentials, the shadow the same
	// cookie and token but the policy's key: masked alike on both sides,
	// the bodies compare equal.
	if all, diff := s.rows(l.ID, "path = '/api/echo'"), s.rows(l.ID, "path = '/api/echo' AND body_match = 0"); all != n/2 || diff != 0 {
		t.Errorf("/api/echo: %d rows, %d with differing bodies; want %d and 0", all, diff, n/2)
	}
	secrets := []string{token, cookie, apiKey, shadowKey}
	// The policy's credential is part of the launch, in the launch bucket
	// (documented); nowhere else.
	for _, f := range filesContaining(t, s.nats.StoreDir(), secrets...) {
		if !strings.Contains(f, "KV_darklaunch_launches") || !strings.HasSuffix(f, fmt.Sprintf("%q", shadowKey)) {
			t.Errorf("a clear credential in the JetStream store: %s", f)
		}
	}
	if found := s.tablesContaining(secrets...); len(found) > 0 {
		t.Errorf("clear credentials in ClickHouse:\n%s", strings.Join(found, "\n"))
	}
}

// A launch whose shadow is a tap (the mirror itself, or a second mirror
// of the same service) does not multiply requests: the runner's replay is
// served by the tap, never sampled again.
func TestReplayLoopsAreCut(t *testing.T) {
	s := startStack(t)
	self := s.createLaunch("http://"+s.mirror.Addr(), 100)
	probes := s.waitMirrorSees()
	if code, _, _ := s.send("GET", "/api/users/7", nil); code != 200 {
		t.Fatalf("status %d", code)
	}
	s.drained()
	s.waitRows(self.ID, probes+1)
	st := s.mirror.Stats()
	// Each client request was sampled once, and its replay came back
	// through the tap once, unsampled.
	if st.Sampled != probes+1 || st.Replays != probes+1 {
		t.Fatalf("a launch whose shadow is the tap: %+v", st)
	}
	if _, err := s.reporterPause(self.ID); err != nil {
		t.Fatal(err)
	}

	// A second tap, of the same service, in front of the shadow.
	cfg := mirror.Config{PrimaryURL: s.shadow.URL, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", TapID: "second",
		SealKeyFile: s.sealKeys, NATS: config.NATS{NATSURL: s.nats.URL()}}
	second, err := mirror.New(cfg, logger("mirror-2"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, second.Run)
	other := s.createLaunch("http://"+second.Addr(), 100)
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !second.Routing(other.ID).Mirrored || !s.mirror.Routing(other.ID).Mirrored {
			return fmt.Errorf("the taps do not mirror %s yet", other.ID)
		}
		return nil
	})
	const n = 10
	for i := range n {
		if code, _, _ := s.send("GET", fmt.Sprintf("/api/users/%d", i+1), nil); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	s.drained()
	s.waitRows(other.ID, n)
	if st := second.Stats(); st.Sampled != 0 || st.Replays != n || st.Proxied != n {
		t.Fatalf("the second tap: %+v", st)
	}
}

// reporterPause pauses a launch through the API.
func (s *stack) reporterPause(id string) (int, error) {
	code, body := s.api("POST", "/v1/launches/"+id+"/pause", nil)
	if code != http.StatusOK {
		return code, fmt.Errorf("pause %s: %d %s", id, code, body)
	}
	return code, nil
}
