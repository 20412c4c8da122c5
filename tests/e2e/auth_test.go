package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/api"
)

// TestControlPlaneNeedsToken is the outsider on the whole stack:
// an anonymous or wrongly authenticated client can neither create a
// launch pointing anywhere nor promote one (so no live request, with its
// users' credentials, goes elsewhere), and a launch over the caps is a
// 422, never a 5xx; with the token the same requests work.
func TestControlPlaneNeedsToken(t *testing.T) {
	s := startStack(t)
	create := mustJSON(t, map[string]any{"name": "outsider", "shadow_url": "http://attacker.example:8080", "sample_percent": 100})
	for _, auth := range []string{"", "Bearer guessed-token-0000000000", "Bearer " + s.token + "x", "Basic " + s.token} {
		code, header, body := s.do(s.reporter.Addr(), "POST", "/v1/launches", create, "Authorization", auth)
		var e api.ErrorBody
		if code != http.StatusUnauthorized || !strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer") ||
			json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Fatalf("create with Authorization %q: %d %s %s", auth, code, header, body)
		}
	}
	l := s.createLaunch(s.shadow.URL, 0)
	if code, _, body := s.do(s.reporter.Addr(), "POST", "/v1/launches/"+l.ID+"/promote", nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous promote: %d %s", code, body)
	}
	var list api.LaunchList
	s.apiOK("GET", "/v1/launches", nil, http.StatusOK, &list)
	if len(list.Launches) != 1 || list.Launches[0].ID != l.ID || list.Launches[0].Status != "active" {
		t.Fatalf("launches after the anonymous attempts: %+v", list.Launches)
	}
	// The mirror still serves users from the primary only.
	if code, _, _ := s.send("GET", "/api/users/1", nil); code != http.StatusOK {
		t.Fatalf("through the mirror: %d", code)
	}

	// Oversized fields: 422 naming the field, on the real stack's KV store.
	for field, value := range map[string]any{
		"name":          strings.Repeat("n", 201),
		"shadow_url":    s.shadow.URL + "/" + strings.Repeat("p", 2048),
		"sticky_key":    "header:" + strings.Repeat("k", 256),
		"include_paths": strings.Split(strings.Repeat("/a,", 65), ",")[:65],
	} {
		body := map[string]any{"name": "big", "shadow_url": s.shadow.URL}
		body[field] = value
		if code, data := s.api("POST", "/v1/launches", body); code != http.StatusUnprocessableEntity || !strings.Contains(string(data), field) {
			t.Errorf("oversized %s: %d %s", field, code, data)
		}
	}
}
