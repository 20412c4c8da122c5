package runner

import (
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/time/rate"
)

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		maxRPS    float64
		n         int
		wantLimit rate.Limit
		wantBurst int
	}{
		{20, 1, 20, 20},
		{20, 2, 10, 10},
		{20, 3, 20.0 / 3, 7}, // ceil: 3 x 7 = 21, the fleet's bursts add up to about max_rps
		{0.5, 1, 0.5, 1},     // below 1 rps a runner still gets one token
		{1, 4, 0.25, 1},
		{10, 0, 10, 10}, // no count yet: this runner alone
		{1e7, 1, 1e7, 10_000_000},
	} {
		limit, burst := share(tc.maxRPS, tc.n)
		if limit != tc.wantLimit || burst != tc.wantBurst {
			t.Errorf("share(%v, %d) = %v, %d; want %v, %d", tc.maxRPS, tc.n, limit, burst, tc.wantLimit, tc.wantBurst)
		}
	}
}

func TestLoadCapAllow(t *testing.T) {
	var n atomic.Int64
	n.Store(1)
	c := newLoadCap(func() int { return int(n.Load()) })

	// No cap: always allowed, and no limiter kept.
	for range 1000 {
		if !c.allow("free", 0) {
			t.Fatal("max_rps 0 must never limit")
		}
	}
	if c.limiter("free") != nil {
		t.Error("a launch without max_rps got a limiter")
	}

	// A share far below one per second: the first replay passes on the
	// burst of one, the next would need ~1000 s of refill.
	if !c.allow("slow", 0.001) {
		t.Fatal("the first envelope must pass on the burst")
	}
	for range 10 {
		if c.allow("slow", 0.001) {
			t.Fatal("an envelope over the cap was allowed")
		}
	}

	// The limiter follows max_rps and the runner count in place.
	c.allow("l", 20)
	lim := c.limiter("l")
	if lim.Limit() != 20 || lim.Burst() != 20 {
		t.Fatalf("one runner, max_rps 20: limit %v burst %d", lim.Limit(), lim.Burst())
	}
	n.Store(2)
	c.allow("l", 20)
	if c.limiter("l") != lim || lim.Limit() != 10 || lim.Burst() != 10 {
		t.Errorf("two runners: limit %v burst %d (same limiter: %v), want 10, 10", lim.Limit(), lim.Burst(), c.limiter("l") == lim)
	}
	c.allow("l", 3)
	if lim.Limit() != 1.5 || lim.Burst() != 2 {
		t.Errorf("two runners, max_rps 3: limit %v burst %d, want 1.5, 2", lim.Limit(), lim.Burst())
	}

	c.prune(func(id string) bool { return id == "l" })
	if c.limiter("slow") != nil || c.limiter("l") != lim {
		t.Error("prune must drop only the launches it is told to")
	}
}

// validKey is what a NATS KV key may hold, and its tokens may not be empty.
var validKey = regexp.MustCompile(`\A[-/_=\.a-zA-Z0-9]+\z`)

func TestRunnerKey(t *testing.T) {
	for _, tc := range []struct {
		id   string
		same bool // the key is the id itself
	}{
		{"shadow-runner-host-b-977", true},
		{"host.example.com-12", true},
		{"A_b=c", true},
		{"pod name/with spaces", false},
		{".leading", false},
		{"trailing.", false},
		{"double..dot", false},
		{"ünïcode", false},
		{"", false},
	} {
		key := runnerKey(tc.id)
		if (key == tc.id) != tc.same {
			t.Errorf("runnerKey(%q) = %q; want it unchanged: %v", tc.id, key, tc.same)
		}
		if !validKey.MatchString(key) || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
			t.Errorf("runnerKey(%q) = %q is not a valid KV key", tc.id, key)
		}
	}
	// Ids that differ only in replaced characters still count as two runners.
	if a, b := runnerKey("a b"), runnerKey("a_b"); a == b {
		t.Errorf(`"a b" and "a_b" share the key %q`, a)
	}
	if a, b := runnerKey("a b"), runnerKey("a/b"); a == b {
		t.Errorf(`"a b" and "a/b" share the key %q`, a)
	}
}
