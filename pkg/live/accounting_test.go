package live

import (
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// The summing rule: every incarnation counted its own events, so the
// totals are plain sums per field and reason, whatever the roles.
func TestSumCounts(t *testing.T) {
	cs := []Counts{
		{Process: "tap-a-1", Role: RoleTap, Sampled: 10, Published: 7, Dropped: map[string]uint64{"queue_full": 2, "too_large": 1}},
		{Process: "tap-b-1", Role: RoleTap, Sampled: 5, Published: 4, Dropped: map[string]uint64{"queue_full": 1}},
		// b restarted: a new incarnation, counting from zero.
		{Process: "tap-b-2", Role: RoleTap, Sampled: 3, Published: 3},
		{Process: "runner-r-1", Role: RoleRunner, Replayed: 9, Skipped: map[string]uint64{"rate_limited": 4}, DeadLettered: map[string]uint64{"seal": 1}},
		{Process: "comparator-c-1", Role: RoleComparator, DeadLettered: map[string]uint64{"malformed": 2, "seal": 1}},
	}
	got := SumCounts(cs)
	if got.Processes != 5 || got.Taps != 3 || got.Runners != 1 || got.Comparators != 1 {
		t.Errorf("processes %+v", got)
	}
	if got.Sampled != 18 || got.Published != 14 || got.Replayed != 9 {
		t.Errorf("sums %+v", got)
	}
	for _, c := range []struct {
		name      string
		got, want map[string]uint64
	}{
		{"dropped", got.Dropped, map[string]uint64{"queue_full": 3, "too_large": 1}},
		{"skipped", got.Skipped, map[string]uint64{"rate_limited": 4}},
		{"dead_lettered", got.DeadLettered, map[string]uint64{"seal": 2, "malformed": 2}},
	} {
		if !maps.Equal(c.got, c.want) {
			t.Errorf("%s %v, want %v", c.name, c.got, c.want)
		}
	}
	if Total(got.Dropped) != 4 || Total(got.DeadLettered) != 4 {
		t.Errorf("totals %d %d", Total(got.Dropped), Total(got.DeadLettered))
	}
	// Nothing to sum: zeros and empty (not nil) maps.
	if z := SumCounts(nil); z.Processes != 0 || z.Dropped == nil || z.Skipped == nil || z.DeadLettered == nil {
		t.Errorf("empty sum %+v", z)
	}
	// The inputs are not written to.
	if cs[0].Dropped["queue_full"] != 2 {
		t.Errorf("input changed: %v", cs[0].Dropped)
	}
}

func TestProcessName(t *testing.T) {
	at := time.Unix(0, 36*36+1)
	if got := ProcessName(RoleTap, "host.1/x", at); got != "tap-host_1_x-101" {
		t.Errorf("ProcessName = %q", got)
	}
	// Two incarnations of one id differ.
	if ProcessName(RoleRunner, "r", at) == ProcessName(RoleRunner, "r", at.Add(time.Nanosecond)) {
		t.Error("incarnations share a name")
	}
}

func TestEncodeDecodeCounts(t *testing.T) {
	c := Counts{LaunchID: "L1", Process: "tap-a-1", Role: RoleTap, Sampled: 3, Dropped: map[string]uint64{"queue_full": 1}}
	data, err := EncodeCounts(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"v":1,"launch_id":"L1","process":"tap-a-1"`) || strings.Contains(string(data), "replayed") {
		t.Errorf("encoded %s", data)
	}
	got, err := DecodeCounts(data)
	if err != nil || got.Sampled != 3 || got.Dropped["queue_full"] != 1 || got.V != AccountingVersion {
		t.Errorf("decoded %+v, %v", got, err)
	}
	for name, mod := range map[string]func(*Counts){
		"launch id with a dot": func(c *Counts) { c.LaunchID = "a.b" },
		"no process":           func(c *Counts) { c.Process = "" },
		"process with a dot":   func(c *Counts) { c.Process = "a.b" },
		"other version":        func(c *Counts) { c.V = 2 },
	} {
		bad := c
		mod(&bad)
		if _, err := EncodeCounts(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Encode with %s: %v", name, err)
		}
	}
	for _, in := range []string{`{`, `{"v":2,"launch_id":"L1","process":"p"}`, `{"v":1,"launch_id":"L1"}`} {
		if _, err := DecodeCounts([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%s): %v", in, err)
		}
	}
}

// A ledger counts concurrently per launch and reason.
func TestLedgerCounts(t *testing.T) {
	l := NewLedger(RoleTap, "tap-1")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				l.Sampled("A", 1)
				l.Published("A", 1)
				l.Dropped("B", "queue_full", 1)
			}
		})
	}
	wg.Wait()
	a, b := l.Counts("A"), l.Counts("B")
	if a.Sampled != 8000 || a.Published != 8000 || len(a.Dropped) != 0 || b.Dropped["queue_full"] != 8000 || b.Sampled != 0 {
		t.Errorf("A %+v, B %+v", a, b)
	}
	if a.Process != l.Process() || !strings.HasPrefix(a.Process, "tap-tap-1-") || a.Role != RoleTap {
		t.Errorf("identity %+v", a)
	}
	// Counts returns a copy.
	b.Dropped["queue_full"] = 0
	if l.Counts("B").Dropped["queue_full"] != 8000 {
		t.Error("Counts shares its map")
	}
	// An event without a launch (or with one that cannot be a key), or
	// on a nil ledger, is ignored.
	l.Sampled("", 1)
	l.Dropped("a.b", "queue_full", 1)
	if c := l.Counts("a.b"); c.LaunchID != "" {
		t.Errorf("counted under an invalid launch id: %+v", c)
	}
	var nilLedger *Ledger
	nilLedger.Sampled("A", 1)
	if _, err := nilLedger.Flush(testenv.Context(t), nil); err != nil {
		t.Error(err)
	}
}

// Against an embedded JetStream: ledgers write their launches' counts,
// only what changed, rewrites do not count twice, a restarted process
// (same id, new ledger) adds to its predecessor instead of replacing it,
// two taps add up, and a stray entry is reported without hiding the rest.
func TestLedgerFlushAndReadCounts(t *testing.T) {
	ctx, js := testenv.Context(t), startJetStream(t)
	const launch = "0195aaaa-0000-7000-8000-000000000001"
	if _, err := NewLedger(RoleTap, "x").Flush(ctx, js); err != nil {
		t.Fatalf("flush of an empty ledger: %v", err)
	}
	tap1, tap2 := NewLedger(RoleTap, "tap-1"), NewLedger(RoleTap, "tap-2")
	tap1.Sampled(launch, 10)
	tap1.Published(launch, 8)
	tap1.Dropped(launch, "queue_full", 2)
	tap1.Sampled("other", 1)
	tap2.Sampled(launch, 5)
	tap2.Dropped(launch, "too_large", 5)
	for _, l := range []*Ledger{tap1, tap2} {
		if _, err := l.Flush(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := tap1.Flush(ctx, js); n != 0 || err != nil {
		t.Errorf("flush without changes wrote %d: %v", n, err)
	}
	read := func() CountTotals {
		t.Helper()
		cs, err := ReadCounts(ctx, js2kv(t, js), launch)
		if err != nil {
			t.Fatal(err)
		}
		return SumCounts(cs)
	}
	if got := read(); got.Taps != 2 || got.Sampled != 15 || got.Published != 8 || got.Dropped["queue_full"] != 2 || got.Dropped["too_large"] != 5 {
		t.Errorf("two taps: %+v", got)
	}
	// More events, flushed twice: the key holds the cumulative counts.
	tap1.Sampled(launch, 1)
	tap1.Published(launch, 1)
	for range 2 {
		if _, err := tap1.Flush(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
	if got := read(); got.Sampled != 16 || got.Published != 9 {
		t.Errorf("after rewrites: %+v", got)
	}
	// tap-1 restarts: a new incarnation with the same id starts from zero
	// under its own key; its predecessor's counts stay.
	restarted := NewLedger(RoleTap, "tap-1")
	for restarted.Process() == tap1.Process() {
		restarted = NewLedger(RoleTap, "tap-1")
	}
	restarted.Sampled(launch, 4)
	restarted.Published(launch, 4)
	if _, err := restarted.Flush(ctx, js); err != nil {
		t.Fatal(err)
	}
	if got := read(); got.Taps != 3 || got.Sampled != 20 || got.Published != 13 {
		t.Errorf("after a restart: %+v", got)
	}

	kv := js2kv(t, js)
	if _, err := kv.Put(ctx, launch+".future", []byte(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, launch+".moved", mustEncodeCounts(t, Counts{LaunchID: launch, Process: "elsewhere", Sampled: 100})); err != nil {
		t.Fatal(err)
	}
	cs, err := ReadCounts(ctx, kv, launch)
	if !errors.Is(err, ErrMalformed) || len(cs) != 3 || SumCounts(cs).Sampled != 20 {
		t.Errorf("with stray entries: %d counts, %v", len(cs), err)
	}
	if _, err := ReadCounts(ctx, kv, "a.*"); !errors.Is(err, ErrInvalid) {
		t.Errorf("wildcard launch id: %v", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 0 || st.History() != 1 {
		t.Errorf("bucket TTL %v history %d", st.TTL(), st.History())
	}
}

func mustEncodeCounts(t *testing.T, c Counts) []byte {
	t.Helper()
	b, err := EncodeCounts(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func js2kv(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := OpenAccountingBucket(testenv.Context(t), js)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// BenchmarkLedger: the cost of counting one event per launch on a request
// path, against a Prometheus counter's Inc (what every drop already
// costs), from parallel goroutines as on a busy tap.
func BenchmarkLedger(b *testing.B) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	b.Run("prometheus_counter", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Inc()
			}
		})
	})
	l := NewLedger(RoleTap, "bench")
	b.Run("ledger", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Sampled("0195aaaa-0000-7000-8000-000000000001", 1)
			}
		})
	})
}

func TestItemsIn(t *testing.T) {
	batch, err := envelope.AppendEnvelopeBatch(nil, []*envelope.Envelope{{ID: "a"}, {ID: "b"}, {ID: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want uint64
	}{
		{"single document", []byte(`{"v":1}`), 1},
		{"batch", batch, 3},
		{"broken count", []byte("DLB\x01\xff"), 1},
		{"count larger than the message", []byte("DLB\x01\x7f\x00"), 1},
		{"magic alone", []byte("DLB\x01"), 1},
		{"version 1", []byte("DLB\x01\x02\x00\x00\x00\x00"), 2},
		{"unknown version", []byte("DLB\x03\x02\x00\x00\x00\x00"), 1},
		{"empty", nil, 1},
	} {
		if got := ItemsIn(c.data); got != c.want {
			t.Errorf("%s: %d items, want %d", c.name, got, c.want)
		}
	}
}
