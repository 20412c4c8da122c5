package comparator

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/compare"
)

func TestExampleSlot(t *testing.T) {
	seen := map[uint8]int{}
	for i := range 300 {
		id := fmt.Sprintf("env-%d", i)
		s := ExampleSlot(id)
		if s >= analytics.ExampleSlots {
			t.Fatalf("slot %d out of range", s)
		}
		if s != ExampleSlot(id) {
			t.Fatalf("slot of %s not stable", id)
		}
		seen[s]++
	}
	for s := range uint8(analytics.ExampleSlots) {
		if seen[s] < 50 { // 100 expected of 300
			t.Errorf("slot %d taken %d times of 300: the hash spreads badly", s, seen[s])
		}
	}
}

func TestBodyText(t *testing.T) {
	big := strings.Repeat("é", maxExampleBody) // two bytes each
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("hello"))
	_ = zw.Close()
	cases := []struct {
		name      string
		h         http.Header
		body      string
		size      int64
		truncated bool
		want      string
	}{
		{"empty", nil, "", 0, false, ""},
		{"dropped by redaction", nil, "", 120, true, "[body not kept: 120 bytes]"},
		{"unknown size", nil, "", -1, true, "[body not kept: unknown size]"},
		{"text", nil, `{"a":1}`, 7, false, `{"a":1}`},
		{"truncated by the tap", nil, `{"a":`, 50, true, "{\"a\":\n[body truncated: first 5 bytes of 50 bytes]"},
		{"invalid utf-8 replaced", nil, "abcdefghij\xffklmnopqrst", 21, false, "abcdefghij\uFFFDklmnopqrst"},
		{"still encoded", http.Header{"Content-Encoding": {"zstd"}}, gz.String(), int64(gz.Len()), false,
			fmt.Sprintf("[zstd-encoded body, %d bytes]", gz.Len())},
		{"identity is no encoding", http.Header{"Content-Encoding": {"identity"}}, "plain", 5, false, "plain"},
		{"binary", nil, "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1000, false, "[binary body, 1000 bytes]"},
	}
	for _, c := range cases {
		if got := bodyText(c.h, []byte(c.body), c.size, c.truncated); got != c.want {
			t.Errorf("%s: bodyText = %q, want %q", c.name, got, c.want)
		}
	}
	got := bodyText(nil, []byte(big), int64(len(big)), false)
	text, note, _ := strings.Cut(got, "\n[body truncated")
	if len(text) > maxExampleBody || len(text) < maxExampleBody-4 || !utf8.ValidString(text) || strings.ContainsRune(text, utf8.RuneError) {
		t.Errorf("large body cut to %d bytes (valid %v), want at most %d whole characters", len(text), utf8.ValidString(text), maxExampleBody)
	}
	if want := fmt.Sprintf(": first %d bytes of %d bytes]", len(text), len(big)); note != want {
		t.Errorf("note %q, want %q", note, want)
	}
}

func TestHeadersJSON(t *testing.T) {
	if got := headersJSON(nil); got != "{}" {
		t.Errorf("no headers: %q", got)
	}
	got := headersJSON(http.Header{"Accept": {"a", "b"}})
	if got != `{"Accept":["a","b"]}` {
		t.Errorf("headers: %q", got)
	}
	got = headersJSON(http.Header{"X-Big": {strings.Repeat("x", maxExampleHeaders)}})
	var parsed map[string][]string
	if err := json.Unmarshal([]byte(got), &parsed); err != nil || len(got) > 200 || !strings.Contains(got, "headers omitted") {
		t.Errorf("oversized headers: %q (%v)", got, err)
	}
}

// TestBuildExampleRedacts checks that nothing sensitive from any part of a
// pair reaches the example, with the default list and with a launch's own.
func TestBuildExampleRedacts(t *testing.T) {
	rs, err := compare.Compile(compare.Rules{RedactHeaders: []string{"X-Tenant"}, RedactKeys: []string{"ssn"}})
	if err != nil {
		t.Fatal(err)
	}
	p := newPair("l1", "e1", "/login", 200, `{"token":"tok-primary","user":{"ssn":"123-45-6789","name":"ann"}}`,
		201, `{"token":"tok-shadow","user":{"ssn":"123-45-6789","name":"ann"}}`)
	p.Envelope.Request.Method = "POST"
	p.Envelope.Request.RawQuery = "api_key=key-in-query&page=2"
	p.Envelope.Request.Headers = http.Header{"Authorization": {"Bearer secret-token"}, "Cookie": {"sid=cookie-value"},
		"X-Tenant": {"tenant-secret"}, "Content-Type": {"application/json"}, "Accept": {"application/json"}}
	p.Envelope.Request.Body = []byte(`{"password":"hunter2","login":"ann"}`)
	p.Envelope.Request.BodySize = int64(len(p.Envelope.Request.Body))
	p.Envelope.Primary.Headers.Set("Set-Cookie", "sid=set-cookie-value")
	// The shadow's body is gzip-encoded: redaction decodes it first.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(p.Shadow.Body)
	_ = zw.Close()
	p.Shadow.Headers.Set("Content-Encoding", "gzip")
	p.Shadow.Body, p.Shadow.BodySize = gz.Bytes(), int64(gz.Len())
	row, err := BuildRow(compare.Comparer{Rules: rs}, p)
	if err != nil {
		t.Fatal(err)
	}
	if row.Fingerprint == "" {
		t.Fatal("the pair must mismatch")
	}
	ex := BuildExample(p, &row, rs)

	all := fmt.Sprintf("%+v", ex)
	for _, secret := range []string{"secret-token", "cookie-value", "tenant-secret", "hunter2", "tok-primary", "tok-shadow",
		"123-45-6789", "key-in-query", "set-cookie-value"} {
		if strings.Contains(all, secret) {
			t.Errorf("example holds %q:\n%s", secret, all)
		}
	}
	for _, kept := range []string{"ann", "page=2", "application/json"} {
		if !strings.Contains(all, kept) {
			t.Errorf("example lost %q:\n%s", kept, all)
		}
	}
	var reqHeaders map[string][]string
	if err := json.Unmarshal([]byte(ex.RequestHeaders), &reqHeaders); err != nil || reqHeaders["Authorization"][0] != compare.Redacted {
		t.Errorf("request headers %q (%v)", ex.RequestHeaders, err)
	}
	if !strings.Contains(ex.ShadowBody, `"name":"ann"`) || strings.Contains(ex.ShadowHeaders, "Content-Encoding") {
		t.Errorf("shadow body not decoded for redaction: %q, headers %s", ex.ShadowBody, ex.ShadowHeaders)
	}
	want := analytics.Example{LaunchID: "l1", Fingerprint: row.Fingerprint, Slot: ExampleSlot("e1"), EnvelopeID: "e1", TS: testTime,
		Route: "/login", Method: "POST", Path: "/login", PrimaryStatus: 200, ShadowStatus: 201}
	got := ex
	got.Query, got.RequestHeaders, got.RequestBody, got.PrimaryHeaders, got.PrimaryBody, got.ShadowHeaders, got.ShadowBody = "", "", "", "", "", "", ""
	got.DiffPaths, got.DiffKinds = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("example\n got %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(ex.DiffPaths, row.DiffPaths) || !reflect.DeepEqual(ex.DiffKinds, row.DiffKinds) {
		t.Errorf("example diffs %v %v, row %v %v", ex.DiffPaths, ex.DiffKinds, row.DiffPaths, row.DiffKinds)
	}
	if p.Envelope.Request.Headers.Get("Authorization") != "Bearer secret-token" {
		t.Error("redaction changed the pair itself")
	}
}

// TestBuildExampleKeepsRealDiffs checks that an example lists the diffs
// its fingerprint covers, not the noise.
func TestBuildExampleKeepsRealDiffs(t *testing.T) {
	row := analytics.Row{LaunchID: "l", EnvelopeID: "e", Fingerprint: "f",
		DiffPaths: []string{"$.id", "$.price", "$.ts"}, DiffKinds: []string{"value_changed", "type_changed", "value_changed"},
		DiffNoise: []bool{true, false, true}}
	ex := BuildExample(newPair("l", "e", "/", 200, "", 200, ""), &row, nil)
	if !reflect.DeepEqual(ex.DiffPaths, []string{"$.price"}) || !reflect.DeepEqual(ex.DiffKinds, []string{"type_changed"}) {
		t.Errorf("example diffs %v %v", ex.DiffPaths, ex.DiffKinds)
	}
}

func TestExampleSlotsBounded(t *testing.T) {
	tr := newExampleSlots(3)
	if !tr.claim("a", 0) || tr.claim("a", 0) || !tr.claim("a", 2) {
		t.Fatal("a slot is claimed once")
	}
	tr.release("a", 0)
	if !tr.claim("a", 0) {
		t.Fatal("a released slot is free again")
	}
	for _, k := range []string{"b", "c"} {
		tr.claim(k, 1)
	}
	// "d" starts a new generation: a, b and c move to the previous one.
	tr.claim("d", 1)
	if tr.claim("a", 2) {
		t.Fatal("a class of the previous generation keeps its slots")
	}
	tr.claim("e", 1) // d, a (moved back) and e fill the current generation
	tr.claim("f", 1) // a new generation: b and c, left in the oldest, are forgotten
	tr.claim("g", 1)
	if tr.len() > 6 {
		t.Fatalf("%d classes tracked, want at most two generations of 3", tr.len())
	}
	if !tr.claim("b", 1) {
		t.Fatal("a forgotten class may write its slots again")
	}
	for i := range 1000 {
		tr.claim(fmt.Sprint(i), uint8(i%analytics.ExampleSlots))
		if tr.len() > 6 {
			t.Fatalf("%d classes tracked", tr.len())
		}
	}
}
