package reporter_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// TestLimits: on a real reporter, every launch field over its cap is a
// 422 naming the field, on create and on PATCH; a launch whose stored JSON
// would be too large for the KV store (characters JSON escapes six times
// over) is a 422 too, never a 503; a body over the decoder's limit is a
// 413. Nothing refused is stored.
func TestLimits(t *testing.T) {
	e := startEnv(t, envOptions{})
	long := func(n int) string { return strings.Repeat("a", n) }
	// escaped is 256 rule paths of 1,000 '<' each: 260 KB in the request,
	// 1.5 MB once stored as JSON ("\u003c" for each '<').
	var escaped []string
	for i := range 256 {
		escaped = append(escaped, fmt.Sprintf("$['%s%d']", strings.Repeat("<", 1000), i))
	}
	for _, c := range []struct {
		name   string
		fields map[string]any
		want   []string
	}{
		{"name", map[string]any{"name": long(launch.MaxNameLen + 1)}, []string{"name is 201 bytes", "at most 200"}},
		{"shadow_url", map[string]any{"shadow_url": "http://s/" + long(launch.MaxURLLen)}, []string{"shadow_url is", "at most 2048"}},
		{"secondary_url", map[string]any{"secondary_url": "http://s/" + long(launch.MaxURLLen)}, []string{"secondary_url is"}},
		{"sticky_key", map[string]any{"sticky_key": "header:" + long(launch.MaxStickyKeyLen)}, []string{"sticky_key is"}},
		{"methods", map[string]any{"methods": strings.Split(strings.TrimSuffix(strings.Repeat("GET,", 17), ","), ",")}, []string{"methods has 17 entries"}},
		{"include_paths count", map[string]any{"include_paths": slices.Repeat([]string{"/a"}, launch.MaxPathPatterns+1)}, []string{"include_paths has 65 patterns"}},
		{"exclude_paths length", map[string]any{"exclude_paths": []string{"/" + long(launch.MaxPathPatternLen)}}, []string{"exclude_paths[0] is 513 bytes"}},
		{"rule count", map[string]any{"compare": map[string]any{"ignore_paths": slices.Repeat([]string{"$.a"}, 300)}}, []string{"compare.ignore_paths", "at most 256"}},
		{"rule header", map[string]any{"compare": map[string]any{"redact_headers": []string{long(300)}}}, []string{"compare.redact_headers[0]", "longer than 256"}},
		{"ramp steps", map[string]any{"ramp": map[string]any{"live_steps": make([]map[string]any, 51)}}, []string{"ramp.live_steps has 51 steps"}},
		{"reason", map[string]any{"reason": long(launch.MaxReasonLen + 1)}, []string{"reason is 501 bytes"}},
		{"stored size", map[string]any{"compare": map[string]any{"ignore_paths": escaped}}, []string{"bytes as stored JSON", "at most 524288"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := *e
			e.t = t
			body := map[string]any{"name": "capped", "shadow_url": "http://s"}
			for k, v := range c.fields {
				body[k] = v
			}
			e.apiError(http.StatusUnprocessableEntity, "POST", "/v1/launches", unescaped(t, body), c.want...)
		})
	}

	l := e.create("patched within caps", 5)
	for _, c := range []struct {
		patch map[string]any
		want  string
	}{
		{map[string]any{"name": long(launch.MaxNameLen + 1)}, "name is"},
		{map[string]any{"shadow_url": "http://s/" + long(launch.MaxURLLen)}, "shadow_url is"},
		{map[string]any{"exclude_paths": slices.Repeat([]string{"/a"}, launch.MaxPathPatterns+1)}, "exclude_paths has"},
		{map[string]any{"sample_percent": 6, "reason": long(launch.MaxReasonLen + 1)}, "reason is"},
		{map[string]any{"compare": map[string]any{"ignore_paths": escaped}}, "bytes as stored JSON"},
	} {
		e.apiError(http.StatusUnprocessableEntity, "PATCH", "/v1/launches/"+l.ID, unescaped(t, c.patch), c.want)
	}
	for _, action := range []string{"pause", "rollback", "promote"} {
		e.apiError(http.StatusUnprocessableEntity, "POST", "/v1/launches/"+l.ID+"/"+action, map[string]any{"reason": long(launch.MaxReasonLen + 1)}, "reason is")
	}
	var got launch.Launch
	e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID, nil, &got)
	if got.Revision != l.Revision || got.Status != launch.StatusActive {
		t.Fatalf("refused requests changed the launch: %+v", got)
	}

	// The decoder's limit: 413 with the limit in the message.
	e.apiError(http.StatusRequestEntityTooLarge, "PATCH", "/v1/launches/"+l.ID, `{"name": "`+long(2<<20)+`"}`, "larger than 1048576 bytes")

	// The store is still fine, and the oversized launches are not in it.
	var list struct{ Launches []launch.Launch }
	e.ok(http.StatusOK, "GET", "/v1/launches", nil, &list)
	if len(list.Launches) != 1 {
		t.Fatalf("%d launches stored, want only the one within caps", len(list.Launches))
	}
}

// unescaped is v as JSON with '<', '>' and '&' as they are, as a client
// other than encoding/json sends them (encoding/json writes \u003c).
func unescaped(t *testing.T, v any) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
