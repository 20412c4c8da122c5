package launch

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// TestCaps: every field over its cap is refused with ErrInvalid naming
// the field; at the cap it is accepted.
func TestCaps(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	paths := func(n, size int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "/" + long(size-1)
		}
		return out
	}
	base := func(change func(*Launch)) Launch {
		l := Launch{Name: "x", ShadowURL: "http://s"}
		change(&l)
		return l
	}
	for _, c := range []struct {
		name  string
		l     Launch
		field string
	}{
		{"name", base(func(l *Launch) { l.Name = long(MaxNameLen + 1) }), "name is 201 bytes"},
		{"shadow_url", base(func(l *Launch) { l.ShadowURL = "http://s/" + long(MaxURLLen) }), "shadow_url is"},
		{"secondary_url", base(func(l *Launch) { l.SecondaryURL = "http://s/" + long(MaxURLLen) }), "secondary_url is"},
		{"sticky_key", base(func(l *Launch) { l.StickyKey = "header:" + long(MaxStickyKeyLen) }), "sticky_key is"},
		{"methods", base(func(l *Launch) { l.Methods = strings.Split(strings.Repeat("GET,", MaxMethods+1), ",")[:MaxMethods+1] }), "methods has 17 entries"},
		{"include_paths count", base(func(l *Launch) { l.IncludePaths = paths(MaxPathPatterns+1, 2) }), "include_paths has 65 patterns"},
		{"exclude_paths length", base(func(l *Launch) { l.ExcludePaths = paths(1, MaxPathPatternLen+1) }), "exclude_paths[0] is 513 bytes"},
		{"compare header name", base(func(l *Launch) { l.Compare = compare.Rules{IgnoreHeaders: []string{long(300)}} }), "ignore_headers[0]"},
	} {
		err := c.l.Normalize()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", c.name, err, c.field)
		}
	}
	atCap := Launch{Name: long(MaxNameLen), ShadowURL: "http://s/" + long(MaxURLLen-9), StickyKey: "header:" + long(MaxStickyKeyLen-7),
		IncludePaths: paths(MaxPathPatterns, MaxPathPatternLen), ExcludePaths: paths(MaxPathPatterns, MaxPathPatternLen)}
	if err := atCap.Normalize(); err != nil {
		t.Fatalf("a launch at every cap: %v", err)
	}
	if err := CheckReason(long(MaxReasonLen)); err != nil {
		t.Fatal(err)
	}
	if err := CheckReason(long(MaxReasonLen + 1)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "reason is 501 bytes") {
		t.Fatalf("long reason: %v", err)
	}
}

// TestStoreRefusesOversized: a launch whose stored JSON is over
// MaxEncodedBytes (here: characters JSON escapes six times over) is
// ErrInvalid, not a store failure; so is a write the server refuses for
// its max payload.
func TestStoreRefusesOversized(t *testing.T) {
	ctx := testenv.Context(t)
	s, _ := openStore(t)
	var rules compare.Rules
	for i := range compare.MaxRuleEntries {
		rules.IgnorePaths = append(rules.IgnorePaths, fmt.Sprintf("$['%s%d']", strings.Repeat("<", 400), i))
	}
	_, err := s.Create(ctx, Launch{Name: "big", ShadowURL: "http://s", Compare: rules})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "bytes as stored JSON") {
		t.Fatalf("oversized create: %v", err)
	}
	l, err := s.Create(ctx, Launch{Name: "small", ShadowURL: "http://s"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Update(ctx, l.ID, func(l *Launch) error { l.Compare = rules; return nil })
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized update: %v", err)
	}
	if err := storeError("store", "x", 2<<20, fmt.Errorf("publish: %w", nats.ErrMaxPayload)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("max payload: %v", err)
	}
	if err := storeError("store", "x", 10, nats.ErrTimeout); errors.Is(err, ErrInvalid) {
		t.Fatalf("a timeout is not the caller's: %v", err)
	}
}
