package reporter_test

import (
	"net/http"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// TestTargetsRefused: link-local and cloud metadata targets are refused on
// create and on PATCH, even when the allow-list names them; with
// REPORTER_ALLOWED_TARGETS set, any other target outside it is refused too,
// each with a 422 naming the field.
func TestTargetsRefused(t *testing.T) {
	e := startEnv(t, envOptions{allowedTargets: "*.internal,10.0.0.0/8,169.254.0.0/16,metadata.google.internal"})
	create := func(shadow, secondary string) map[string]any {
		b := map[string]any{"name": "ssrf", "service": "checkout", "shadow_url": shadow, "sample_percent": 10}
		if secondary != "" {
			b["secondary_url"] = secondary
		}
		return b
	}
	for _, c := range []struct{ shadow, secondary, field, why string }{
		{"http://169.254.169.254/latest/meta-data/", "", "shadow_url", "metadata"},
		{"http://metadata.google.internal/computeMetadata/v1/", "", "shadow_url", "metadata"},
		{"http://[::ffff:169.254.169.254]/", "", "shadow_url", "metadata"},
		{"http://[fd00:ec2::254]/", "", "shadow_url", "metadata"},
		{"http://v2.internal", "http://[fe80::1]:8080", "secondary_url", "metadata"},
		{"http://evil.example.com", "", "shadow_url", "not in the allowed targets"},
		{"http://v2.internal", "http://192.168.0.9", "secondary_url", "not in the allowed targets"},
	} {
		e.apiError(http.StatusUnprocessableEntity, "POST", "/v1/launches", create(c.shadow, c.secondary), c.field, c.why)
	}

	var l launch.Launch
	e.ok(http.StatusCreated, "POST", "/v1/launches", create("http://v2.internal:8080", "http://10.0.0.7"), &l)
	path := "/v1/launches/" + l.ID
	e.apiError(http.StatusUnprocessableEntity, "PATCH", path, map[string]any{"shadow_url": "http://169.254.169.254"}, "shadow_url", "metadata")
	e.apiError(http.StatusUnprocessableEntity, "PATCH", path, map[string]any{"secondary_url": "http://metadata.goog"}, "secondary_url", "metadata")
	e.apiError(http.StatusUnprocessableEntity, "PATCH", path, map[string]any{"shadow_url": "http://shadow.example.org"}, "shadow_url", "not in the allowed targets")

	var got launch.Launch
	e.ok(http.StatusOK, "PATCH", path, map[string]any{"shadow_url": "http://v3.internal", "sample_percent": 20}, &got)
	e.ok(http.StatusOK, "GET", path, nil, &got)
	if got.ShadowURL != "http://v3.internal" || got.SecondaryURL != "http://10.0.0.7" {
		t.Fatalf("after the refused patches: %+v", got)
	}
}
