package comparator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// fakeSource is a launch source for the cache's own logic; the tests with
// a real KV bucket and watcher are in service_test.go.
type fakeSource struct {
	snap  map[string]*launch.Launch
	kv    map[string]*launch.Launch
	err   error
	reads int
}

func (f *fakeSource) snapshot() map[string]*launch.Launch { return f.snap }

func (f *fakeSource) get(_ context.Context, id string) (*launch.Launch, error) {
	f.reads++
	if f.err != nil {
		return nil, f.err
	}
	if l, ok := f.kv[id]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("%w: %s", launch.ErrNotFound, id)
}

func ignoring(id string, rev uint64, paths ...string) *launch.Launch {
	return &launch.Launch{ID: id, Revision: rev, Compare: compare.Rules{IgnorePaths: paths}}
}

// ignores reports whether rs ignores a value change at $.<field>.
func ignores(rs *compare.Ruleset, field string) bool {
	p := newPair("l", "e", "/", 200, `{"`+field+`":1}`, 200, `{"`+field+`":2}`)
	return compare.Comparer{Rules: rs}.Pair(&p.Envelope.Primary, &p.Shadow.Response).Match
}

func TestRulesCache(t *testing.T) {
	src := &fakeSource{snap: map[string]*launch.Launch{}, kv: map[string]*launch.Launch{}}
	c := newRulesCache(src, slog.New(slog.DiscardHandler))
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	ctx := context.Background()

	// From the snapshot: compiled once per revision.
	src.snap["a"] = ignoring("a", 3, "$.x")
	rs, rev := c.rules(ctx, "a")
	if rev != 3 || !ignores(rs, "x") || ignores(rs, "y") {
		t.Fatalf("a@3: rev %d", rev)
	}
	if rs2, _ := c.rules(ctx, "a"); rs2 != rs {
		t.Error("the same revision was compiled again")
	}
	src.snap["a"] = ignoring("a", 4, "$.y")
	if rs, rev = c.rules(ctx, "a"); rev != 4 || ignores(rs, "x") || !ignores(rs, "y") {
		t.Errorf("a@4: rev %d", rev)
	}
	if src.reads != 0 {
		t.Errorf("%d KV reads for launches in the snapshot", src.reads)
	}

	// Not in the snapshot yet: read from the KV once, then cached.
	src.kv["b"] = ignoring("b", 7, "$.z")
	for range 3 {
		if rs, rev = c.rules(ctx, "b"); rev != 7 || !ignores(rs, "z") {
			t.Fatalf("b from the KV: rev %d", rev)
		}
	}
	if src.reads != 1 {
		t.Errorf("%d KV reads, want 1", src.reads)
	}
	// The watcher catches up with the same revision: nothing recompiled.
	src.snap["b"] = src.kv["b"]
	if rs2, rev := c.rules(ctx, "b"); rs2 != rs || rev != 7 {
		t.Error("the KV read's ruleset was not reused")
	}

	// Gone: the defaults, read again only after lookupEvery.
	if rs, rev = c.rules(ctx, "gone"); rs != nil || rev != 0 {
		t.Errorf("unknown launch: %v, rev %d", rs, rev)
	}
	c.rules(ctx, "gone")
	if src.reads != 2 {
		t.Errorf("%d KV reads, want 2", src.reads)
	}
	src.kv["gone"] = ignoring("gone", 9, "$.x")
	now = now.Add(lookupEvery)
	if _, rev = c.rules(ctx, "gone"); rev != 9 || src.reads != 3 {
		t.Errorf("after lookupEvery: rev %d, %d reads", rev, src.reads)
	}

	// Deleted from the snapshot: read again, and the KV says gone.
	delete(src.snap, "a")
	if rs, rev = c.rules(ctx, "a"); rs != nil || rev != 0 || src.reads != 4 {
		t.Errorf("deleted launch: rev %d, %d reads", rev, src.reads)
	}

	// KV unreachable: the last known rules stay.
	delete(src.snap, "b")
	now = now.Add(lookupEvery)
	src.err = errors.New("nats: timeout")
	if rs, rev = c.rules(ctx, "b"); rev != 7 || !ignores(rs, "z") {
		t.Errorf("KV down: rev %d", rev)
	}

	// Rules that do not compile (written around the API): the defaults,
	// with the revision recorded.
	src.snap["bad"] = ignoring("bad", 5, "no-dollar")
	if rs, rev = c.rules(ctx, "bad"); rs != nil || rev != 5 {
		t.Errorf("bad rules: %v rev %d", rs, rev)
	}
}

func TestRulesCacheBounded(t *testing.T) {
	src := &fakeSource{snap: map[string]*launch.Launch{}}
	c := newRulesCache(src, slog.New(slog.DiscardHandler))
	for i := range maxRuleEntries + 10 {
		c.rules(context.Background(), fmt.Sprint("made-up-", i))
		if len(c.entries) > maxRuleEntries {
			t.Fatalf("%d entries", len(c.entries))
		}
	}
}
