package comparator

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
)

var testTime = time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC)

// newPair builds a valid pair: a GET of path answered by both sides with
// JSON bodies.
func newPair(launchID, id, path string, primaryStatus int, primaryBody string, shadowStatus int, shadowBody string) *envelope.Pair {
	h := func() http.Header { return http.Header{"Content-Type": {"application/json"}} }
	return &envelope.Pair{
		V: envelope.Version,
		Envelope: envelope.Envelope{
			V: envelope.Version, ID: id, LaunchID: launchID, TapID: "tap-1", ReceivedAt: testTime,
			Request: envelope.Request{Method: "GET", Path: path, BodySize: 0},
			Primary: envelope.Response{Status: primaryStatus, Headers: h(), Body: []byte(primaryBody),
				BodySize: int64(len(primaryBody)), LatencyUS: 1500},
		},
		Shadow: envelope.Outcome{Response: envelope.Response{Status: shadowStatus, Headers: h(), Body: []byte(shadowBody),
			BodySize: int64(len(shadowBody)), LatencyUS: 4500}},
		RunnerID:   "runner-1",
		ReplayedAt: testTime.Add(time.Second),
	}
}

func TestBuildRow(t *testing.T) {
	base := analytics.Row{LaunchID: "l1", EnvelopeID: "e1", TS: testTime, TapID: "tap-1", Method: "GET",
		Route: "/users/{id}", Path: "/users/42", PrimaryStatus: 200, ShadowStatus: 200, PrimaryLatencyUS: 1500, ShadowLatencyUS: 4500}
	tests := []struct {
		name string
		pair func() *envelope.Pair
		want func(r *analytics.Row)
	}{
		{"match", func() *envelope.Pair {
			return newPair("l1", "e1", "/users/42", 200, `{"id":42}`, 200, `{ "id": 42.0 }`)
		}, func(r *analytics.Row) {
			r.Match, r.StatusMatch, r.ContentTypeMatch, r.BodyMatch, r.HeadersMatch = true, true, true, true, true
			r.BodyFormat = compare.FormatJSON
		}},
		{"json value changed", func() *envelope.Pair {
			return newPair("l1", "e1", "/users/42", 200, `{"user":{"email":"a@x"}}`, 200, `{"user":{"email":"b@x"}}`)
		}, func(r *analytics.Row) {
			r.StatusMatch, r.ContentTypeMatch, r.HeadersMatch, r.BodyFormat = true, true, true, compare.FormatJSON
			r.DiffPaths, r.DiffKinds = []string{"$.user.email"}, []string{compare.KindValueChanged}
			r.DiffGeneralized, r.DiffNoise = []string{"$.user.email"}, []bool{false}
			r.Fingerprint = fingerprint(r)
		}},
		{"array index generalized", func() *envelope.Pair {
			return newPair("l1", "e1", "/users/42", 200, `{"items":[{"p":1},{"p":2}]}`, 200, `{"items":[{"p":1},{"p":3}]}`)
		}, func(r *analytics.Row) {
			r.StatusMatch, r.ContentTypeMatch, r.HeadersMatch, r.BodyFormat = true, true, true, compare.FormatJSON
			r.DiffPaths, r.DiffKinds = []string{"$.items[1].p"}, []string{compare.KindValueChanged}
			r.DiffGeneralized, r.DiffNoise = []string{"$.items[*].p"}, []bool{false}
			r.Fingerprint = fingerprint(r)
		}},
		{"text body summary", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 200, "a\nb\n", 200, "a\nc\n")
			p.Envelope.Primary.Headers.Set("Content-Type", "text/plain")
			p.Shadow.Headers.Set("Content-Type", "text/plain")
			return p
		}, func(r *analytics.Row) {
			r.StatusMatch, r.ContentTypeMatch, r.HeadersMatch, r.BodyFormat = true, true, true, compare.FormatText
			r.DiffPaths, r.DiffKinds = []string{"$"}, []string{compare.KindBodyText}
			r.DiffGeneralized, r.DiffNoise = []string{"$"}, []bool{false}
			r.Fingerprint = fingerprint(r)
			r.DiffSummary = `line 2: -"b" / +"c"`
		}},
		{"header differs", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 200, `{}`, 200, `{}`)
			p.Shadow.Headers.Set("Cache-Control", "no-store")
			return p
		}, func(r *analytics.Row) {
			r.StatusMatch, r.ContentTypeMatch, r.BodyMatch, r.BodyFormat = true, true, true, compare.FormatJSON
			r.DiffPaths, r.DiffKinds = []string{"header.Cache-Control"}, []string{compare.KindHeader}
			r.DiffGeneralized, r.DiffNoise = []string{"header.Cache-Control"}, []bool{false}
			r.Fingerprint = fingerprint(r)
		}},
		{"status and body", func() *envelope.Pair {
			return newPair("l1", "e1", "/users/42", 200, `{"a":1}`, 503, `{"error":"x"}`)
		}, func(r *analytics.Row) {
			r.ShadowStatus, r.ContentTypeMatch, r.HeadersMatch, r.BodyFormat = 503, true, true, compare.FormatJSON
			r.DiffPaths = []string{"status", "$.a", "$.error"}
			r.DiffKinds = []string{compare.KindStatus, compare.KindMissingField, compare.KindExtraField}
			r.DiffGeneralized, r.DiffNoise = r.DiffPaths, []bool{false, false, false}
			r.Fingerprint = fingerprint(r)
		}},
		{"shadow failed", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 200, `{"a":1}`, 0, "")
			p.Shadow = envelope.Outcome{Response: envelope.Response{LatencyUS: 4500}, Error: "dial tcp: connection refused", ErrorKind: envelope.ErrorRefused}
			return p
		}, func(r *analytics.Row) {
			r.ShadowStatus = 0
			r.ShadowError, r.ShadowErrorKind = "dial tcp: connection refused", envelope.ErrorRefused
		}},
		{"shadow failed without a kind", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 200, `{"a":1}`, 0, "")
			p.Shadow = envelope.Outcome{Response: envelope.Response{LatencyUS: 4500}, Error: strings.Repeat("x", 5000)}
			return p
		}, func(r *analytics.Row) {
			r.ShadowStatus = 0
			r.ShadowError, r.ShadowErrorKind = strings.Repeat("x", maxErrorLen), envelope.ErrorOther
		}},
		{"truncation flags and note", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 200, `{"a":1}`, 200, `{"a":1}`)
			p.Envelope.Request.BodyTruncated = true
			p.Envelope.Primary.BodyTruncated, p.Envelope.Primary.BodySize = true, 10
			p.Shadow.BodyTruncated, p.Shadow.BodySize = true, 10
			return p
		}, func(r *analytics.Row) {
			r.Match, r.StatusMatch, r.ContentTypeMatch, r.BodyMatch, r.HeadersMatch = true, true, true, true, true
			r.BodyFormat = compare.FormatText
			r.RequestBodyTruncated, r.PrimaryBodyTruncated, r.ShadowBodyTruncated = true, true, true
			r.CompareNote = "primary body truncated: compared the first 7 of 10 bytes; shadow body truncated: compared the first 7 of 10 bytes; JSON body truncated: compared as bytes"
		}},
		{"odd numbers are clamped", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 70000, ``, 200, ``)
			p.Envelope.Primary.LatencyUS = -5
			return p
		}, func(r *analytics.Row) {
			r.PrimaryStatus, r.PrimaryLatencyUS, r.ContentTypeMatch, r.BodyMatch, r.HeadersMatch = 0, 0, true, true, true
			r.BodyFormat = compare.FormatEmpty
			r.DiffPaths, r.DiffKinds = []string{"status"}, []string{compare.KindStatus}
			r.DiffGeneralized, r.DiffNoise = []string{"status"}, []bool{false}
			r.Fingerprint = fingerprint(r)
		}},
		{"secondary cancels noise", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 200, `{"request_id":"a","price":1}`, 200, `{"request_id":"b","price":2}`)
			p.Secondary = &envelope.Outcome{Response: envelope.Response{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}},
				Body: []byte(`{"request_id":"c","price":1}`), LatencyUS: 3000}}
			return p
		}, func(r *analytics.Row) {
			r.StatusMatch, r.ContentTypeMatch, r.HeadersMatch, r.BodyFormat = true, true, true, compare.FormatJSON
			r.HasSecondary, r.SecondaryStatus, r.SecondaryLatencyUS = true, 200, 3000
			r.DiffPaths = []string{"$.request_id", "$.price"}
			r.DiffKinds = []string{compare.KindValueChanged, compare.KindValueChanged}
			r.DiffGeneralized, r.DiffNoise = r.DiffPaths, []bool{true, false}
			r.Fingerprint = compare.Fingerprint("/users/{id}", []compare.Diff{{Path: "$.price", Generalized: "$.price", Kind: compare.KindValueChanged}})
		}},
		{"secondary agrees with the primary: nothing is noise", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 404, `{"a":1}`, 200, `{"a":2}`)
			p.Secondary = &envelope.Outcome{Response: envelope.Response{Status: 404, Headers: http.Header{"Content-Type": {"application/json"}},
				Body: []byte(`{"a":1}`), LatencyUS: 3000}}
			return p
		}, func(r *analytics.Row) {
			r.PrimaryStatus, r.ContentTypeMatch, r.HeadersMatch, r.BodyFormat = 404, true, true, compare.FormatJSON
			r.HasSecondary, r.SecondaryStatus, r.SecondaryLatencyUS = true, 404, 3000
			r.DiffPaths = []string{"status", "$.a"}
			r.DiffKinds = []string{compare.KindStatus, compare.KindValueChanged}
			r.DiffGeneralized, r.DiffNoise = r.DiffPaths, []bool{false, false}
			r.Fingerprint = fingerprint(r)
		}},
		{"secondary failed", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 200, `{"request_id":"a"}`, 200, `{"request_id":"b"}`)
			p.Secondary = &envelope.Outcome{Response: envelope.Response{LatencyUS: 700}, Error: "dial tcp: connection refused", ErrorKind: envelope.ErrorRefused}
			return p
		}, func(r *analytics.Row) {
			r.StatusMatch, r.ContentTypeMatch, r.HeadersMatch, r.BodyFormat = true, true, true, compare.FormatJSON
			r.SecondaryError, r.SecondaryLatencyUS = "dial tcp: connection refused", 700
			r.DiffPaths, r.DiffKinds = []string{"$.request_id"}, []string{compare.KindValueChanged}
			r.DiffGeneralized, r.DiffNoise = r.DiffPaths, []bool{false}
			r.Fingerprint = fingerprint(r)
		}},
		{"format change on a noisy path, a dropped field, noise", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 200, `{"ts":"2026-11-27T08:00:00.123456Z","ip":"10.0.0.1:5000","rid":"9f86d081884c7d65"}`,
				200, `{"ts":"2026-11-27T08:00:01Z","rid":"0a1b2c3d4e5f6a7b"}`)
			return withSecondary(p, 200, `{"ts":"2026-11-27T08:00:00.654321Z","ip":"10.0.0.2:5001","rid":"77aa88bb99cc00dd"}`)
		}, func(r *analytics.Row) {
			r.StatusMatch, r.ContentTypeMatch, r.HeadersMatch, r.BodyFormat = true, true, true, compare.FormatJSON
			r.HasSecondary, r.SecondaryStatus, r.SecondaryLatencyUS = true, 200, 2500
			r.DiffPaths = []string{"$.ts", "$.ip", "$.rid"}
			r.DiffKinds = []string{compare.KindFormatChanged, compare.KindMissingField, compare.KindValueChanged}
			r.DiffGeneralized = []string{"$.ts (string/rfc3339 (µs, Z) -> string/rfc3339 (s, Z))", "$.ip", "$.rid"}
			r.DiffNoise = []bool{false, false, true}
			r.Fingerprint = compare.Fingerprint(r.Route, []compare.Diff{{Path: "$.ts", Generalized: r.DiffGeneralized[0], Kind: compare.KindFormatChanged},
				{Path: "$.ip", Kind: compare.KindMissingField}})
		}},
		{"shadow failed, secondary answered", func() *envelope.Pair {
			p := newPair("l1", "e1", "/users/42", 200, `{"a":1}`, 0, "")
			p.Shadow = envelope.Outcome{Response: envelope.Response{LatencyUS: 4500}, Error: "timeout", ErrorKind: envelope.ErrorTimeout}
			p.Secondary = &envelope.Outcome{Response: envelope.Response{Status: 200, LatencyUS: 900}}
			return p
		}, func(r *analytics.Row) {
			r.ShadowStatus = 0
			r.ShadowError, r.ShadowErrorKind = "timeout", envelope.ErrorTimeout
			r.HasSecondary, r.SecondaryStatus, r.SecondaryLatencyUS = true, 200, 900
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := base
			tt.want(&want)
			got, err := BuildRow(compare.Comparer{}, tt.pair())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// fingerprint is the fingerprint of every diff of a row.
func fingerprint(r *analytics.Row) string {
	diffs := make([]compare.Diff, len(r.DiffPaths))
	for i := range diffs {
		diffs[i] = compare.Diff{Path: r.DiffPaths[i], Generalized: r.DiffGeneralized[i], Kind: r.DiffKinds[i]}
	}
	return compare.Fingerprint(r.Route, diffs)
}

func TestBuildRowBounds(t *testing.T) {
	p := newPair("l1", "e1", "/"+strings.Repeat("é", 3000), 200, "", 200, "")
	row, err := BuildRow(compare.Comparer{}, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(row.Path) > maxPathLen || !strings.HasPrefix(p.Envelope.Request.Path, row.Path) || len(row.Route) > compare.MaxRouteLen {
		t.Fatalf("path %d bytes, route %d bytes", len(row.Path), len(row.Route))
	}
	if len(row.Path)%2 != 1 { // "/" plus whole two-byte characters
		t.Fatalf("path cut inside a character: %d bytes", len(row.Path))
	}
	for _, ts := range []time.Time{time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)} {
		p.Envelope.ReceivedAt = ts
		if _, err := BuildRow(compare.Comparer{}, p); !errors.Is(err, envelope.ErrMalformed) {
			t.Errorf("received_at %s: err = %v, want ErrMalformed", ts, err)
		}
	}
	// MaxBodyBytes caps the decoded bodies compared.
	p = newPair("l1", "e1", "/", 200, `{"a":"`+strings.Repeat("x", 100)+`"}`, 200, `{"a":"`+strings.Repeat("x", 100)+`"}`)
	row, _ = BuildRow(compare.Comparer{MaxBodyBytes: 10}, p)
	if !strings.Contains(row.CompareNote, "larger than 10 bytes") {
		t.Errorf("MaxBodyBytes 10: note %q", row.CompareNote)
	}
	if cfg := DefaultConfig(); cfg.MaxBodyBytes != compare.DefaultMaxBodyBytes {
		t.Errorf("COMPARATOR_MAX_BODY_BYTES default %d, want the engine's %d", cfg.MaxBodyBytes, compare.DefaultMaxBodyBytes)
	}
	// MaxDiffs from the settings reaches the comparison.
	p = newPair("l1", "e1", "/", 200, `[1,2,3]`, 200, `[4,5,6]`)
	row, _ = BuildRow(compare.Comparer{MaxDiffs: 2}, p)
	if len(row.DiffPaths) != 2 || len(row.DiffKinds) != 2 || !strings.Contains(row.CompareNote, "more than 2") {
		t.Fatalf("diffs %v, note %q", row.DiffPaths, row.CompareNote)
	}
}

func TestConfigNormalize(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.normalize(); err != nil {
		t.Fatal(err)
	}
	if ok.MaxAckPending != 4*ok.BatchSize {
		t.Errorf("MaxAckPending = %d, want 4 x batch size", ok.MaxAckPending)
	}
	if aw := ok.ackWait(); aw > 5*time.Second {
		t.Errorf("ack wait %s: a crashed comparator's pairs would wait over 5s", aw)
	}
	for _, mut := range []func(c *Config){
		func(c *Config) { c.BatchSize = 0 },
		func(c *Config) { c.BatchBytes = 1000 },
		func(c *Config) { c.FlushInterval = 0 },
		func(c *Config) { c.InsertTimeout = -1 },
		func(c *Config) { c.RetryMax = 0 },
		func(c *Config) { c.ShutdownTimeout = 0 },
		func(c *Config) { c.MaxAckPending = c.BatchSize },
		func(c *Config) { c.MaxDiffs = 0 },
		func(c *Config) { c.MaxBodyBytes = 0 },
		func(c *Config) { c.NATSURL = "" },
		func(c *Config) { c.ClickHouseAddr = "" },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrConfig", c, err)
		}
	}
}
