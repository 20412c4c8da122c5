package comparator

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// launchStore opens the launches bucket on the harness's server.
func (h *harness) launchStore() *launch.Store {
	h.t.Helper()
	kv, err := launch.OpenBucket(h.ctx, h.js)
	if err != nil {
		h.t.Fatal(err)
	}
	return launch.NewStore(kv)
}

func (h *harness) createLaunch(rules compare.Rules) *launch.Launch {
	h.t.Helper()
	l, err := h.launchStore().Create(h.ctx, launch.Launch{Name: "noise", ShadowURL: "http://shadow.test",
		SecondaryURL: "http://secondary.test", SamplePercent: 100, Compare: rules})
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// noiseRow is the part of a comparisons row about noise and rules.
type noiseRow struct {
	Match, HeadersMatch, HasSecondary uint8
	DiffPaths, DiffKinds, DiffGen     []string
	DiffNoise                         []uint8
	Fingerprint, BodyFormat, Summary  string
	SecondaryStatus                   uint16
	SecondaryLatency                  uint64
	SecondaryError                    string
	RulesRevision                     uint64
}

func (h *harness) noiseRow(envelopeID string) (noiseRow, error) {
	var r noiseRow
	err := h.conn().QueryRow(h.ctx, fmt.Sprintf(`SELECT match, headers_match, has_secondary, diff_paths, diff_kinds,
		diff_generalized, diff_noise, fingerprint, body_format, diff_summary, secondary_status, secondary_latency_us,
		secondary_error, rules_revision FROM %s.comparisons FINAL WHERE envelope_id = ?`, h.db), envelopeID).Scan(
		&r.Match, &r.HeadersMatch, &r.HasSecondary, &r.DiffPaths, &r.DiffKinds, &r.DiffGen, &r.DiffNoise, &r.Fingerprint,
		&r.BodyFormat, &r.Summary, &r.SecondaryStatus, &r.SecondaryLatency, &r.SecondaryError, &r.RulesRevision)
	return r, err
}

func (h *harness) mustNoiseRow(envelopeID string) noiseRow {
	h.t.Helper()
	r, err := h.noiseRow(envelopeID)
	if err != nil {
		h.t.Fatalf("row %s: %v", envelopeID, err)
	}
	return r
}

func withSecondary(p *envelope.Pair, status int, body string) *envelope.Pair {
	p.Secondary = &envelope.Outcome{Response: envelope.Response{Status: status,
		Headers: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body), BodySize: int64(len(body)), LatencyUS: 2500}}
	return p
}

// TestSecondaryNoise: a diff the secondary shows too is noise; a change
// only the shadow makes is real, and the fingerprint covers it alone.
func TestSecondaryNoise(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	l := h.createLaunch(compare.Rules{})
	r := h.start(h.config())
	waitReady(t, r)

	noisy := withSecondary(newPair(l.ID, envelope.NewID(), "/orders/12",
		200, `{"request_id":"p-1","order":{"id":12,"total":10}}`,
		200, `{"request_id":"s-1","order":{"id":12,"total":11}}`),
		200, `{"request_id":"q-1","order":{"id":12,"total":10}}`)
	allNoise := withSecondary(newPair(l.ID, envelope.NewID(), "/orders/13",
		200, `{"request_id":"p-2","order":{"id":13}}`, 200, `{"request_id":"s-2","order":{"id":13}}`),
		200, `{"request_id":"q-2","order":{"id":13}}`)
	secDown := newPair(l.ID, envelope.NewID(), "/orders/14",
		200, `{"request_id":"p-3"}`, 200, `{"request_id":"s-3"}`)
	secDown.Secondary = &envelope.Outcome{Response: envelope.Response{LatencyUS: 300}, Error: "dial tcp: connection refused", ErrorKind: envelope.ErrorRefused}
	noSec := newPair(l.ID, envelope.NewID(), "/orders/15", 200, `{"request_id":"p-4"}`, 200, `{"request_id":"s-4"}`)
	for _, p := range []*envelope.Pair{noisy, allNoise, secDown, noSec} {
		h.publish(p, "")
	}
	h.waitRows(l.ID, 4)

	got := h.mustNoiseRow(noisy.Envelope.ID)
	want := noiseRow{DiffPaths: []string{"$.request_id", "$.order.total"}, DiffKinds: []string{"value_changed", "value_changed"},
		DiffGen: []string{"$.request_id", "$.order.total"}, DiffNoise: []uint8{1, 0}, HeadersMatch: 1, HasSecondary: 1,
		Fingerprint: compare.Fingerprint("/orders/{id}", []compare.Diff{{Path: "$.order.total", Generalized: "$.order.total", Kind: "value_changed"}}),
		BodyFormat:  "json", SecondaryStatus: 200, SecondaryLatency: 2500, RulesRevision: l.Revision}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("noisy pair:\n got %+v\nwant %+v", got, want)
	}
	if got.Fingerprint == compare.Fingerprint("/orders/{id}", []compare.Diff{
		{Path: "$.request_id", Kind: "value_changed"}, {Path: "$.order.total", Kind: "value_changed"}}) {
		t.Error("the fingerprint covers the noise")
	}

	// Every diff noise: still a mismatch (match keeps its meaning), no class.
	got = h.mustNoiseRow(allNoise.Envelope.ID)
	if got.Match != 0 || !slices.Equal(got.DiffNoise, []uint8{1}) || got.Fingerprint != "" || got.HasSecondary != 1 {
		t.Errorf("all-noise pair: %+v", got)
	}
	// A failed secondary cancels nothing.
	got = h.mustNoiseRow(secDown.Envelope.ID)
	if got.HasSecondary != 0 || got.SecondaryError != "dial tcp: connection refused" || got.SecondaryStatus != 0 ||
		got.SecondaryLatency != 300 || !slices.Equal(got.DiffNoise, []uint8{0}) || got.Fingerprint == "" {
		t.Errorf("pair with a failed secondary: %+v", got)
	}
	got = h.mustNoiseRow(noSec.Envelope.ID)
	if got.HasSecondary != 0 || got.SecondaryError != "" || !slices.Equal(got.DiffNoise, []uint8{0}) || got.Fingerprint == "" {
		t.Errorf("pair without a secondary: %+v", got)
	}

	testenv.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if st := r.Stats(); st.WithSecondary != 2 || st.NoisyDiffs != 2 || st.Inserted != 4 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	testenv.WantMetrics(t, r.AdminAddr(), "darklaunch_comparator_pairs_with_secondary_total 2", "darklaunch_comparator_noisy_diffs_total 2")
}

// TestLaunchRulesApplyWithoutRestart: a launch's ignore rule applies, and
// a later change of its rules in the KV (what PATCH does) applies to later
// pairs; each row records the revision whose rules it was compared with.
func TestLaunchRulesApplyWithoutRestart(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	l := h.createLaunch(compare.Rules{IgnorePaths: []string{"$..updated_at"}})
	r := h.start(h.config())
	waitReady(t, r)

	pair := func() *envelope.Pair {
		return newPair(l.ID, envelope.NewID(), "/items/1", 200,
			`{"updated_at":"2026-01-01","item":{"updated_at":"2026-01-01","price":1,"tags":[{"updated_at":1}]}}`, 200,
			`{"updated_at":"2026-02-02","item":{"updated_at":"2026-02-02","price":2,"tags":[{"updated_at":2}]}}`)
	}
	first := pair()
	h.publish(first, "")
	h.waitRows(l.ID, 1)
	got := h.mustNoiseRow(first.Envelope.ID)
	if !slices.Equal(got.DiffPaths, []string{"$.item.price"}) || got.RulesRevision != l.Revision {
		t.Fatalf("with ignore_paths $..updated_at: diffs %v, rules_revision %d (launch revision %d)", got.DiffPaths, got.RulesRevision, l.Revision)
	}

	updated, err := h.launchStore().Update(h.ctx, l.ID, func(l *launch.Launch) error {
		l.Compare.IgnorePaths = append(l.Compare.IgnorePaths, "$.item.price")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Pairs published right after the update may still be compared with
	// the old rules (the watcher sees the change a moment later); each
	// row must say which rules it got, and the new ones must take over.
	n := uint64(1)
	testenv.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		p := pair()
		h.publish(p, "")
		n++
		h.waitRows(l.ID, n)
		got := h.mustNoiseRow(p.Envelope.ID)
		switch got.RulesRevision {
		case l.Revision:
			if !slices.Equal(got.DiffPaths, []string{"$.item.price"}) {
				t.Errorf("old revision, diffs %v", got.DiffPaths)
			}
			return fmt.Errorf("pair compared with revision %d still", got.RulesRevision)
		case updated.Revision:
			if len(got.DiffPaths) != 0 || got.Match != 1 || got.Fingerprint != "" {
				t.Errorf("new revision, row %+v: want a match", got)
			}
			return nil
		default:
			t.Fatalf("rules_revision %d, want %d or %d", got.RulesRevision, l.Revision, updated.Revision)
			return nil
		}
	})
}

// TestUnknownLaunchUsesDefaults: pairs of a launch the KV does not hold
// are stored, compared with the default rules (revision 0), not
// dead-lettered.
func TestUnknownLaunchUsesDefaults(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	r := h.start(h.config())
	waitReady(t, r)
	p := newPair("l-nowhere", envelope.NewID(), "/a", 200, `{"updated_at":1}`, 200, `{"updated_at":2}`)
	h.publish(p, "")
	h.waitRows("l-nowhere", 1)
	got := h.mustNoiseRow(p.Envelope.ID)
	if got.RulesRevision != 0 || !slices.Equal(got.DiffPaths, []string{"$.updated_at"}) {
		t.Errorf("row %+v", got)
	}
	if st := r.Stats(); st.DeadLettered != 0 {
		t.Errorf("dead-lettered %d", st.DeadLettered)
	}
}

// exampleCounts returns, per fingerprint of a launch, the number of
// examples collapsed (FINAL) and raw.
func (h *harness) exampleCounts(launchID string) (final, raw map[string]uint64) {
	h.t.Helper()
	final, raw = map[string]uint64{}, map[string]uint64{}
	for _, c := range []struct {
		m   map[string]uint64
		fin string
	}{{final, " FINAL"}, {raw, ""}} {
		rows, err := h.conn().Query(h.ctx, fmt.Sprintf("SELECT fingerprint, count() FROM %s.examples%s WHERE launch_id = ? GROUP BY fingerprint",
			h.db, c.fin), launchID)
		if err != nil {
			h.t.Fatal(err)
		}
		for rows.Next() {
			var fp string
			var n uint64
			if err := rows.Scan(&fp, &n); err != nil {
				h.t.Fatal(err)
			}
			c.m[fp] = n
		}
		rows.Close()
	}
	return final, raw
}

// tableText renders every column of every row of a launch in table
// (no FINAL: replaced versions included) as text.
func (h *harness) tableText(table, launchID string) string {
	h.t.Helper()
	rows, err := h.conn().Query(h.ctx, fmt.Sprintf("SELECT * FROM %s.%s WHERE launch_id = ?", h.db, table), launchID)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var b strings.Builder
	for rows.Next() {
		vals := make([]any, len(types))
		for i, ct := range types {
			vals[i] = reflectNew(ct.ScanType())
		}
		if err := rows.Scan(vals...); err != nil {
			h.t.Fatal(err)
		}
		for i, v := range vals {
			fmt.Fprintf(&b, "%s=%v\n", rows.Columns()[i], deref(v))
		}
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return b.String()
}

// TestExamples: many mismatching pairs of one class leave at most
// analytics.ExampleSlots examples (written, not just collapsed), and an
// example never holds a secret the pair carried.
func TestExamples(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	l := h.createLaunch(compare.Rules{RedactKeys: []string{"ssn"}})
	r := h.start(h.config())
	waitReady(t, r)

	// Ids chosen so that every slot is hit.
	var ids []string
	slots := map[uint8]bool{}
	for i := range 40 {
		id := fmt.Sprintf("ex-%02d", i)
		ids = append(ids, id)
		slots[ExampleSlot(id)] = true
	}
	if len(slots) != analytics.ExampleSlots {
		t.Fatalf("test ids hit %d slots", len(slots))
	}
	for i, id := range ids {
		h.publish(newPair(l.ID, id, fmt.Sprintf("/users/%d", i), 200, `{"n":1}`, 200, fmt.Sprintf(`{"n":%d}`, i+2)), "")
	}
	secret := newPair(l.ID, envelope.NewID(), "/login", 200,
		`{"password":"hunter2","session":{"token":"tok-123"},"ssn":"123-45-6789","user":"ann"}`, 200,
		`{"password":"hunter2","session":{"token":"tok-456"},"ssn":"123-45-6789","user":"bob"}`)
	secret.Envelope.Request.Method = "POST"
	secret.Envelope.Request.Headers = http.Header{"Authorization": {"Bearer secret-token"}, "Content-Type": {"application/json"},
		"Cookie": {"session=cookie-secret"}}
	secret.Envelope.Request.Body = []byte(`{"password":"hunter2","user":"ann"}`)
	secret.Envelope.Request.BodySize = int64(len(secret.Envelope.Request.Body))
	secret.Envelope.Primary.Headers.Set("Set-Cookie", "session=cookie-secret; HttpOnly")
	h.publish(secret, "")
	h.waitRows(l.ID, uint64(len(ids)+1))

	classOf := h.mustNoiseRow(ids[0]).Fingerprint
	secretClass := h.mustNoiseRow(secret.Envelope.ID).Fingerprint
	if classOf == "" || secretClass == "" || classOf == secretClass {
		t.Fatalf("fingerprints %q and %q", classOf, secretClass)
	}
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		final, raw := h.exampleCounts(l.ID)
		if final[classOf] != analytics.ExampleSlots || final[secretClass] != 1 || len(final) != 2 {
			return fmt.Errorf("examples per class (FINAL) %v, want %d and 1", final, analytics.ExampleSlots)
		}
		if raw[classOf] != analytics.ExampleSlots {
			return fmt.Errorf("%d example rows written for one class, want %d", raw[classOf], analytics.ExampleSlots)
		}
		return nil
	})
	if st := r.Stats(); st.Examples != analytics.ExampleSlots+1 || st.ExampleFailures != 0 {
		t.Errorf("stats %+v", st)
	}

	text := h.tableText("examples", l.ID)
	for _, s := range []string{"secret-token", "hunter2", "tok-123", "tok-456", "123-45-6789", "cookie-secret"} {
		if strings.Contains(text, s) {
			t.Errorf("the examples table holds %q", s)
		}
	}
	for _, s := range []string{compare.Redacted, `"user":"bob"`, "/login", secretClass} {
		if !strings.Contains(text, s) {
			t.Errorf("the examples lack %q:\n%s", s, text)
		}
	}
	if m := testenv.Metrics(t, r.AdminAddr()); !strings.Contains(m, fmt.Sprintf("darklaunch_comparator_examples_written_total %d", analytics.ExampleSlots+1)) {
		t.Error("metrics lack the examples written")
	}
}

// TestExampleFailureDoesNotBlockRows: with the examples table gone, rows
// are still stored and acked; the failure is counted.
func TestExampleFailureDoesNotBlockRows(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	r := h.start(h.config())
	waitReady(t, r)
	if err := h.conn().Exec(h.ctx, fmt.Sprintf("DROP TABLE %s.examples", h.db)); err != nil {
		t.Fatal(err)
	}
	const launch = "l-noexamples"
	for i := range 5 {
		h.publish(newPair(launch, envelope.NewID(), "/a", 200, `{"a":1}`, 200, fmt.Sprintf(`{"a":%d}`, i+2)), "")
	}
	h.waitRows(launch, 5)
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := r.Stats(); st.ExampleFailures == 0 || st.Examples != 0 {
			return fmt.Errorf("stats %+v", st)
		}
		if n := h.streamMsgs(stream.PairsStream); n != 0 {
			return fmt.Errorf("%d pairs not acked", n)
		}
		return nil
	})
}

func reflectNew(t reflect.Type) any { return reflect.New(t).Interface() }

func deref(v any) any { return reflect.ValueOf(v).Elem().Interface() }

// TestFormatChangedIsNotNoise: on a path whose values differ between
// primary and secondary in every request (noise), a shadow value of another
// shape is stored as a real format_changed diff, whose generalized path
// names the change and whose class gets a redacted example; a shadow value
// of the same shape stays noise. A JSON sequence body is compared line by
// line, with its own body format.
func TestFormatChangedIsNotNoise(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	l := h.createLaunch(compare.Rules{})
	r := h.start(h.config())
	waitReady(t, r)

	changed := withSecondary(newPair(l.ID, envelope.NewID(), "/whoami",
		200, `{"client":"10.1.2.3:51234","password":"hunter2-primary"}`, 200, `{"client":"10.1.2.3","password":"hunter2-primary"}`),
		200, `{"client":"10.9.8.7:40211","password":"hunter2-primary"}`)
	same := withSecondary(newPair(l.ID, envelope.NewID(), "/whoami",
		200, `{"client":"10.1.2.3:51234"}`, 200, `{"client":"10.4.4.4:80"}`),
		200, `{"client":"10.9.8.7:40211"}`)
	nd := func(body string) string { return body }
	stream := withSecondary(newPair(l.ID, envelope.NewID(), "/events",
		200, nd("{\"at\":\"2026-11-27T08:00:00.100Z\",\"v\":1}\n{\"at\":\"2026-11-27T08:00:00.200Z\",\"v\":2}\n"),
		200, nd("{\"at\":\"2026-11-27T08:00:00.500Z\",\"v\":1}\n{\"at\":\"2026-11-27T08:00:00.600Z\",\"v\":3}\n")),
		200, nd("{\"at\":\"2026-11-27T08:00:00.300Z\",\"v\":1}\n{\"at\":\"2026-11-27T08:00:00.400Z\",\"v\":2}\n"))
	for _, side := range []*envelope.Response{&stream.Envelope.Primary, &stream.Shadow.Response, &stream.Secondary.Response} {
		side.Headers.Set("Content-Type", "application/x-ndjson")
	}
	for _, p := range []*envelope.Pair{changed, same, stream} {
		h.publish(p, "")
	}
	h.waitRows(l.ID, 3)

	ip := compare.StringShape("10.1.2.3")
	ipPort := compare.StringShape("10.1.2.3:51234")
	gen := compare.FormatChangedPath("$.client", ipPort, ip)
	if gen != "$.client (string/ip:port -> string/ipv4)" {
		t.Errorf("generalized path %q", gen)
	}
	got := h.mustNoiseRow(changed.Envelope.ID)
	want := noiseRow{DiffPaths: []string{"$.client"}, DiffKinds: []string{compare.KindFormatChanged}, DiffGen: []string{gen},
		DiffNoise: []uint8{0}, HeadersMatch: 1, HasSecondary: 1, BodyFormat: "json", SecondaryStatus: 200, SecondaryLatency: 2500,
		Fingerprint:   compare.Fingerprint("/whoami", []compare.Diff{{Path: "$.client", Generalized: gen, Kind: compare.KindFormatChanged}}),
		RulesRevision: l.Revision}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("format change on a noisy path:\n got %+v\nwant %+v", got, want)
	}
	if got := h.mustNoiseRow(same.Envelope.ID); !slices.Equal(got.DiffNoise, []uint8{1}) || got.Fingerprint != "" ||
		!slices.Equal(got.DiffKinds, []string{compare.KindValueChanged}) {
		t.Errorf("same shape on a noisy path: %+v", got)
	}
	got = h.mustNoiseRow(stream.Envelope.ID)
	if got.BodyFormat != compare.FormatNDJSON || !slices.Equal(got.DiffPaths, []string{"$[0].at", "$[1].at", "$[1].v"}) ||
		!slices.Equal(got.DiffNoise, []uint8{1, 1, 0}) || !slices.Equal(got.DiffGen, []string{"$[*].at", "$[*].at", "$[*].v"}) {
		t.Errorf("NDJSON pair: %+v", got)
	}

	// The format change's class has its example, redacted.
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if final, _ := h.exampleCounts(l.ID); final[want.Fingerprint] != 1 {
			return fmt.Errorf("examples per class %v, want one of %s", final, want.Fingerprint)
		}
		return nil
	})
	text := h.tableText("examples", l.ID)
	if strings.Contains(text, "hunter2") || !strings.Contains(text, `"client":"10.1.2.3"`) || !strings.Contains(text, "format_changed") {
		t.Errorf("the examples table:\n%s", text)
	}
}
