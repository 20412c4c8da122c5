package launch

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCaptureNormalize(t *testing.T) {
	l := Launch{Name: "x", ShadowURL: "http://s", Capture: Capture{
		DropHeaders:    []string{"cookie", "X-Session", "COOKIE"},
		ReplaceHeaders: map[string]string{"authorization": "Bearer shadow-token"},
	}}
	if err := l.Normalize(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(l.Capture.DropHeaders, ",") != "Cookie,X-Session" || l.Capture.ReplaceHeaders["Authorization"] != "Bearer shadow-token" {
		t.Fatalf("normalized to %+v", l.Capture)
	}
	many := make([]string, MaxCaptureHeaders+1)
	for i := range many {
		many[i] = "X-H" + strings.Repeat("a", i)
	}
	secret := "Bearer s3cr3t\n"
	for name, c := range map[string]struct {
		c     Capture
		field string
	}{
		"too many":      {Capture{DropHeaders: many}, "capture names 33 headers"},
		"bad name":      {Capture{DropHeaders: []string{"X Y"}}, "capture.drop_headers[0]"},
		"long name":     {Capture{DropHeaders: []string{strings.Repeat("a", MaxHeaderNameLen+1)}}, "capture.drop_headers[0]"},
		"host":          {Capture{DropHeaders: []string{"host"}}, "Host cannot be changed"},
		"marker":        {Capture{ReplaceHeaders: map[string]string{"x-darklaunch-shadow": "0"}}, "capture.replace_headers"},
		"both":          {Capture{DropHeaders: []string{"A"}, ReplaceHeaders: map[string]string{"a": "v"}}, "capture.replace_headers.A"},
		"empty value":   {Capture{ReplaceHeaders: map[string]string{"A": ""}}, "capture.replace_headers.A"},
		"control value": {Capture{ReplaceHeaders: map[string]string{"Authorization": secret}}, "capture.replace_headers.Authorization"},
		"long value":    {Capture{ReplaceHeaders: map[string]string{"A": strings.Repeat("v", MaxReplaceValueLen+1)}}, "longer than 8192"},
	} {
		l := Launch{Name: "x", ShadowURL: "http://s", Capture: c.c}
		err := l.Normalize()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", name, err, c.field)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

func TestCaptureApply(t *testing.T) {
	c := Capture{DropHeaders: []string{"Cookie"}, ReplaceHeaders: map[string]string{"Authorization": "Bearer shadow"}}
	h := http.Header{"Cookie": {"s=1"}, "Authorization": {"Bearer user", "x"}, "Accept": {"*/*"}}
	out := c.Apply(h)
	if out.Get("Cookie") != "" || len(out["Authorization"]) != 1 || out.Get("Authorization") != "Bearer shadow" || out.Get("Accept") != "*/*" {
		t.Fatalf("applied: %v", out)
	}
	if h.Get("Cookie") != "s=1" || h.Get("Authorization") != "Bearer user" {
		t.Fatalf("Apply changed its input: %v", h)
	}
	anon := http.Header{"Accept": {"*/*"}}
	if got := c.Apply(anon); got.Get("Authorization") != "" {
		t.Fatalf("a header the request lacks is not added: %v", got)
	}
}

func TestCaptureRedactedAndPatched(t *testing.T) {
	l := &Launch{Name: "x", ShadowURL: "http://s", Capture: Capture{ReplaceHeaders: map[string]string{"Authorization": "Bearer shadow"}}}
	if err := l.Normalize(); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(l.Redacted())
	if strings.Contains(string(data), "Bearer shadow") || !strings.Contains(string(data), RedactedHeaderValue) {
		t.Fatalf("redacted launch: %s", data)
	}
	if l.Capture.ReplaceHeaders["Authorization"] != "Bearer shadow" {
		t.Fatal("Redacted changed the launch")
	}
	p := Patch{Capture: &Capture{ReplaceHeaders: map[string]string{"X-Api-Key": "k"}}}
	if r := p.Redacted(); r.Capture.ReplaceHeaders["X-Api-Key"] != RedactedHeaderValue || p.Capture.ReplaceHeaders["X-Api-Key"] != "k" {
		t.Fatal("patch redaction")
	}
	// A policy read through the API and sent back keeps its secrets.
	shown := l.Redacted().Capture
	shown.DropHeaders = []string{"Cookie"}
	if err := l.ApplyPatch(Patch{Capture: &shown}, time.Now()); err != nil ||
		l.Capture.ReplaceHeaders["Authorization"] != "Bearer shadow" || l.Capture.DropHeaders[0] != "Cookie" {
		t.Fatalf("patch with the redacted value: %v %+v", err, l.Capture)
	}
	bad := Capture{ReplaceHeaders: map[string]string{"X-Other": RedactedHeaderValue}}
	if err := l.ApplyPatch(Patch{Capture: &bad}, time.Now()); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "X-Other") {
		t.Fatalf("redacted value without a stored one: %v", err)
	}
	created := Launch{Name: "x", ShadowURL: "http://s", Capture: bad}
	if err := created.Normalize(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("the placeholder as a value: %v", err)
	}
	if err := l.ApplyPatch(Patch{Capture: &Capture{}}, time.Now()); err != nil || !l.Capture.IsZero() {
		t.Fatalf("{} removes the policy: %v %+v", err, l.Capture)
	}
	data, _ = json.Marshal(l)
	if strings.Contains(string(data), `"capture"`) {
		t.Fatalf("an empty policy is left out of the JSON: %s", data)
	}
}
