package live

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// hist returns latency buckets from upper bound (ms) → count.
func hist(t *testing.T, counts map[float64]uint64) []uint64 {
	t.Helper()
	b := make([]uint64, NumBuckets)
	for upper, n := range counts {
		i := slices.Index(Bounds[:], upper)
		if i < 0 {
			t.Fatalf("%v is not a bound", upper)
		}
		b[i] = n
	}
	return b
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func TestBoundsAreIncreasingAndEndInInf(t *testing.T) {
	for i := 1; i < NumBuckets; i++ {
		if !(Bounds[i] > Bounds[i-1]) {
			t.Fatalf("Bounds[%d] = %v after %v", i, Bounds[i], Bounds[i-1])
		}
		if r := Bounds[i] / Bounds[i-1]; i < NumBuckets-1 && r > 4.0/3+1e-9 {
			t.Errorf("Bounds[%d]/Bounds[%d] = %v, more than 4/3", i, i-1, r)
		}
	}
	if !math.IsInf(Bounds[NumBuckets-1], 1) || Bounds[0] != 0.1 || Bounds[NumBuckets-2] != 10000 || NumBuckets != 52 {
		t.Errorf("bounds %v", Bounds)
	}
}

func TestBucketOf(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want float64 // upper bound of the bucket
	}{
		{0, 0.1},
		{50 * time.Microsecond, 0.1},
		{100 * time.Microsecond, 0.1}, // bounds are inclusive
		{100*time.Microsecond + 1, 0.125},
		{time.Millisecond, 1},
		{1100 * time.Microsecond, 1.25},
		{7 * time.Millisecond, 8},
		{10 * time.Second, 10000},
		{10*time.Second + 1, math.Inf(1)},
		{time.Hour, math.Inf(1)},
	} {
		if got := Bounds[BucketOf(c.d)]; got != c.want {
			t.Errorf("BucketOf(%v): bucket up to %v, want %v", c.d, got, c.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	two := map[float64]uint64{1.25: 10, 1.5: 10}        // 10 in (1, 1.25], 10 in (1.25, 1.5]
	tail := map[float64]uint64{1.25: 9, math.Inf(1): 1} // one beyond 10 s
	for _, c := range []struct {
		name   string
		counts map[float64]uint64
		q      float64
		want   float64
	}{
		{"empty", nil, 0.5, 0},
		{"median at a bound", two, 0.5, 1.25},
		{"p95 interpolated", two, 0.95, 1.25 + 0.25*9/10},
		{"p10 interpolated", two, 0.1, 1 + 0.25*2/10},
		{"q 0 is the lowest bucket's lower bound", two, 0, 1},
		{"q 1 is the highest bucket's upper bound", two, 1, 1.5},
		{"q above 1 is clamped", two, 1.5, 1.5},
		{"q below 0 is clamped", two, -1, 1},
		{"first bucket starts at 0", map[float64]uint64{0.1: 4}, 0.5, 0.05},
		{"empty buckets between are skipped", map[float64]uint64{1: 1, 100: 1}, 0.75, 80 + 20*0.5},
		{"rank before the +Inf bucket", tail, 0.9, 1.25},
		{"rank in the +Inf bucket gives 10 s", tail, 0.95, 10000},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Side{LatencyBuckets: hist(t, c.counts)}
			if got := s.Quantile(c.q); !near(got, c.want) {
				t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
			}
		})
	}
}

func TestRatesAndLatencyRatio(t *testing.T) {
	for _, c := range []struct {
		name                    string
		new, primary            Side
		delta, ratio50, ratio95 float64
		minRequests             uint64
	}{
		{
			name:        "slower and failing new version",
			new:         Side{Requests: 200, Errors: 10, LatencyBuckets: hist(t, map[float64]uint64{20: 100})},  // (15, 20]
			primary:     Side{Requests: 400, Errors: 4, LatencyBuckets: hist(t, map[float64]uint64{12.5: 100})}, // (10, 12.5]
			delta:       10.0/200 - 4.0/400,
			ratio50:     (15 + 5*0.5) / (10 + 2.5*0.5),
			ratio95:     (15 + 5*0.95) / (10 + 2.5*0.95),
			minRequests: 200,
		},
		{
			name:    "alike",
			new:     Side{Requests: 50, Errors: 1, LatencyBuckets: hist(t, map[float64]uint64{2: 50})},
			primary: Side{Requests: 100, Errors: 2, LatencyBuckets: hist(t, map[float64]uint64{2: 100})},
			delta:   0, ratio50: 1, ratio95: 1, minRequests: 50,
		},
		{
			name:    "at 100% the primary has nothing: no ratio",
			new:     Side{Requests: 80, Errors: 8, LatencyBuckets: hist(t, map[float64]uint64{2: 80})},
			primary: Side{LatencyBuckets: make([]uint64, NumBuckets)},
			delta:   0.1, ratio50: 0, ratio95: 0, minRequests: 0,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			tot := Totals{New: c.new, Primary: c.primary}
			if got := tot.ErrorRateDelta(); !near(got, c.delta) {
				t.Errorf("ErrorRateDelta = %v, want %v", got, c.delta)
			}
			if got := tot.LatencyRatio(0.5); !near(got, c.ratio50) {
				t.Errorf("LatencyRatio(0.5) = %v, want %v", got, c.ratio50)
			}
			if got := tot.LatencyRatio(0.95); !near(got, c.ratio95) {
				t.Errorf("LatencyRatio(0.95) = %v, want %v", got, c.ratio95)
			}
			if got := tot.MinRequests(); got != c.minRequests {
				t.Errorf("MinRequests = %d, want %d", got, c.minRequests)
			}
		})
	}
}

// Expected values computed independently (Python: math.erfc, math.log).
func TestErrorRateTests(t *testing.T) {
	for _, c := range []struct {
		newErrors, newRequests, primaryErrors, primaryRequests uint64
		z, p                                                   float64
		avp01, avp05                                           float64 // ErrorRateAlwaysValidP(0.01), (0.05)
	}{
		{30, 1000, 15, 1000, 2.261656365159503, 0.011859321316095735, 0.30626135492539935, 0.6159856645858833},
		{10, 1000, 10, 1000, 0, 0.5, 1, 1},
		{5, 1000, 20, 1000, -3.018927632559765, 0.9987316444125157, 0.05813719654772899, 0.11095680578040577},
		{60, 2000, 10, 500, 1.2123216124221796, 0.11269464697227519, 1, 1},
		{300, 10000, 150, 10000, 7.151985398521514, 4.2765834474904987e-13, 1.1178990942444032e-10, 1.9494866835636656e-10},
		{100, 1000, 10, 1000, 8.827348295047496, 5.359330655631394e-19, 7.0781854889134705e-09, 2.8464975937655795e-16},
		// Undefined: no errors at all, everything an error, an empty side.
		{0, 1000, 0, 1000, 0, 1, 1, 1},
		{50, 50, 70, 70, 0, 1, 1, 1},
		{5, 100, 0, 0, 0, 1, 1, 1},
	} {
		tot := Totals{
			New:     Side{Requests: c.newRequests, Errors: c.newErrors},
			Primary: Side{Requests: c.primaryRequests, Errors: c.primaryErrors},
		}
		z, p := tot.ErrorRateZTest()
		if !near(z, c.z) || !near(p, c.p) {
			t.Errorf("%d/%d vs %d/%d: z %v p %v, want z %v p %v", c.newErrors, c.newRequests, c.primaryErrors, c.primaryRequests, z, p, c.z, c.p)
		}
		if got := tot.ErrorRateAlwaysValidP(0.01); !near(got, c.avp01) {
			t.Errorf("%d/%d vs %d/%d: always-valid p (tau 0.01) %v, want %v", c.newErrors, c.newRequests, c.primaryErrors, c.primaryRequests, got, c.avp01)
		}
		if got := tot.ErrorRateAlwaysValidP(0.05); !near(got, c.avp05) {
			t.Errorf("%d/%d vs %d/%d: always-valid p (tau 0.05) %v, want %v", c.newErrors, c.newRequests, c.primaryErrors, c.primaryRequests, got, c.avp05)
		}
		if got := tot.ErrorRateAlwaysValidP(0); got != tot.ErrorRateAlwaysValidP(0.01) {
			t.Errorf("tau 0 gives %v, not the default 0.01's value", got)
		}
	}
}

func TestAggregate(t *testing.T) {
	step := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	snap := func(tap string, since time.Duration, at time.Duration, newReq, newErr, primReq, primErr uint64, newLat, primLat map[float64]uint64) Snapshot {
		return Snapshot{
			V: Version, LaunchID: "l1", TapID: tap, Since: step.Add(since), At: step.Add(at), LivePercent: 50,
			New:     Side{Requests: newReq, Errors: newErr, LatencyBuckets: hist(t, newLat)},
			Primary: Side{Requests: primReq, Errors: primErr, LatencyBuckets: hist(t, primLat)},
		}
	}
	a := snap("a", 10*time.Millisecond, time.Minute, 10, 1, 20, 0, map[float64]uint64{1: 10}, map[float64]uint64{1: 18, 2: 2})
	b := snap("b", 0, 2*time.Minute, 5, 5, 7, 1, map[float64]uint64{1: 3, 8000: 2}, map[float64]uint64{2: 7})
	old := snap("old", -time.Second, 3*time.Minute, 1000, 1000, 1000, 0, map[float64]uint64{1: 1000}, map[float64]uint64{1: 1000})
	short := snap("short", time.Second, time.Minute, 1, 0, 1, 0, nil, nil)
	short.New.LatencyBuckets = short.New.LatencyBuckets[:10]

	for _, c := range []struct {
		name        string
		snaps       []Snapshot
		since       time.Time
		taps, stale int
		from, to    time.Time
		new, prim   Side
	}{
		{
			name: "two taps of the step, one from the step before, one unusable", snaps: []Snapshot{a, old, b, short}, since: step,
			taps: 2, stale: 2, from: step, to: step.Add(2 * time.Minute),
			new:  Side{Requests: 15, Errors: 6, LatencyBuckets: hist(t, map[float64]uint64{1: 13, 8000: 2})},
			prim: Side{Requests: 27, Errors: 1, LatencyBuckets: hist(t, map[float64]uint64{1: 18, 2: 9})},
		},
		{
			name: "an earlier since takes the old tap in", snaps: []Snapshot{a, old}, since: step.Add(-time.Minute),
			taps: 2, stale: 0, from: step.Add(-time.Second), to: step.Add(3 * time.Minute),
			new:  Side{Requests: 1010, Errors: 1001, LatencyBuckets: hist(t, map[float64]uint64{1: 1010})},
			prim: Side{Requests: 1020, Errors: 0, LatencyBuckets: hist(t, map[float64]uint64{1: 1018, 2: 2})},
		},
		{
			name: "nothing", snaps: nil, since: step,
			new: Side{LatencyBuckets: make([]uint64, NumBuckets)}, prim: Side{LatencyBuckets: make([]uint64, NumBuckets)},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Aggregate(c.snaps, c.since)
			if got.Taps != c.taps || got.Stale != c.stale || !got.From.Equal(c.from) || !got.To.Equal(c.to) {
				t.Errorf("taps %d stale %d from %v to %v, want %d %d %v %v", got.Taps, got.Stale, got.From, got.To, c.taps, c.stale, c.from, c.to)
			}
			for _, s := range []struct {
				name      string
				got, want Side
			}{{"new", got.New, c.new}, {"primary", got.Primary, c.prim}} {
				if s.got.Requests != s.want.Requests || s.got.Errors != s.want.Errors || !slices.Equal(s.got.LatencyBuckets, s.want.LatencyBuckets) {
					t.Errorf("%s: %+v, want %+v", s.name, s.got, s.want)
				}
			}
		})
	}
	// Aggregate does not write into the snapshots.
	if a.New.Requests != 10 || a.New.LatencyBuckets[slices.Index(Bounds[:], 1)] != 10 {
		t.Errorf("snapshot changed: %+v", a.New)
	}
}

func TestEncodeDecode(t *testing.T) {
	since := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	s := Snapshot{LaunchID: "0195-abc", TapID: "tap.1", Since: since, At: since.Add(time.Second), LivePercent: 12.5,
		New: Side{Requests: 3, Errors: 1, LatencyBuckets: hist(t, map[float64]uint64{2: 3})}}
	data, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"v":1,"launch_id":"0195-abc","tap_id":"tap.1"`) || !strings.Contains(string(data), `"live_percent":12.5`) {
		t.Errorf("encoded %s", data)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.V != Version || !got.Since.Equal(since) || got.New.Requests != 3 || !slices.Equal(got.New.LatencyBuckets, s.New.LatencyBuckets) ||
		len(got.Primary.LatencyBuckets) != NumBuckets || got.Primary.Observed() != 0 {
		t.Errorf("decoded %+v", got)
	}

	for _, c := range []struct {
		name string
		mod  func(*Snapshot)
	}{
		{"launch id with a dot", func(s *Snapshot) { s.LaunchID = "a.b" }},
		{"launch id with a wildcard", func(s *Snapshot) { s.LaunchID = "a*" }},
		{"no tap id", func(s *Snapshot) { s.TapID = "" }},
		{"no since", func(s *Snapshot) { s.Since = time.Time{} }},
		{"short buckets", func(s *Snapshot) { s.New.LatencyBuckets = make([]uint64, 3) }},
		{"other version", func(s *Snapshot) { s.V = 2 }},
	} {
		bad := s
		c.mod(&bad)
		if _, err := Encode(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Encode with %s: %v", c.name, err)
		}
	}
	for _, in := range []string{`{`, `{"v":2}`, strings.Replace(string(data), `"v":1`, `"v":7`, 1),
		strings.Replace(string(data), `"latency_buckets":[0,`, `"latency_buckets":[`, 1)} {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%.60s): %v", in, err)
		}
	}
}

func TestKey(t *testing.T) {
	for _, c := range []struct{ tap, want string }{
		{"host-123", "L.host-123"},
		{"a.b/c d*>", "L.a_b_c_d__"},
		{"x=y_z", "L.x=y_z"},
		{"", "L._"},
		{"héllo", "L.h_llo"},
	} {
		if got := Key("L", c.tap); got != c.want {
			t.Errorf("Key(L, %q) = %q, want %q", c.tap, got, c.want)
		}
	}
}
