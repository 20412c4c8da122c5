package comparator

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

const (
	// lookupTimeout bounds one KV read of a launch the watcher does not
	// know yet.
	lookupTimeout = 2 * time.Second
	// lookupEvery is how long the outcome of a KV read (found, gone or
	// failed) stands for a launch the watcher still does not know: pairs
	// of a deleted launch, or of an id that never existed, cost one read
	// per period, not one per pair.
	lookupEvery = 30 * time.Second
	// maxRuleEntries bounds the cache; ids come from the pairs, so a
	// stream of made-up ids must not grow it without end. When full it is
	// emptied, which costs one compilation (or KV read) per launch.
	maxRuleEntries = 10_000
)

// rulesEntry is a launch's compiled rules at one revision.
type rulesEntry struct {
	rev uint64
	rs  *compare.Ruleset // nil: the defaults
	// checked is when the KV was read for this entry; zero when it came
	// from the watcher's snapshot.
	checked time.Time
}

// ruleSource is where launches are read from: the watcher's snapshot
// first, the KV for an id the snapshot lacks.
type ruleSource interface {
	snapshot() map[string]*launch.Launch
	get(ctx context.Context, id string) (*launch.Launch, error)
}

type kvSource struct {
	w *launch.Watcher
	s *launch.Store
}

func (k kvSource) snapshot() map[string]*launch.Launch { return k.w.Snapshot().ByID }

func (k kvSource) get(ctx context.Context, id string) (*launch.Launch, error) {
	return k.s.Get(ctx, id)
}

// rulesCache compiles each launch's compare rules once per KV revision, so
// a PATCH of the rules applies to the pairs compared after the watcher saw
// it, without restart. It is used by the consume loop alone (not safe for
// concurrent use).
type rulesCache struct {
	src     ruleSource
	log     *slog.Logger
	now     func() time.Time
	entries map[string]*rulesEntry
}

func newRulesCache(src ruleSource, log *slog.Logger) *rulesCache {
	return &rulesCache{src: src, log: log, now: time.Now, entries: map[string]*rulesEntry{}}
}

// rules returns the ruleset for a launch and the revision it comes from;
// (nil, 0) means the defaults because the launch is not known. A launch
// the watcher has not seen yet (created a moment ago) is read from the KV;
// one that is gone is compared with the defaults rather than refused, since
// its pair is still a valid measurement.
func (c *rulesCache) rules(ctx context.Context, id string) (*compare.Ruleset, uint64) {
	if l, ok := c.src.snapshot()[id]; ok {
		if e := c.entries[id]; e != nil && e.rev == l.Revision {
			// Known to the watcher from now on: should it disappear
			// from the snapshot, the KV is read again at once.
			e.checked = time.Time{}
			return e.rs, e.rev
		}
		e := c.compile(l)
		c.store(id, e)
		return e.rs, e.rev
	}
	now := c.now()
	e := c.entries[id]
	if e != nil && !e.checked.IsZero() && now.Sub(e.checked) < lookupEvery {
		return e.rs, e.rev
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
	l, err := c.src.get(lctx, id)
	cancel()
	switch {
	case err == nil:
		if e == nil || e.rev != l.Revision {
			e = c.compile(l)
		}
	case errors.Is(err, launch.ErrNotFound):
		if e == nil || e.rev != 0 {
			c.log.Info("pairs of an unknown launch are compared with the default rules", "launch_id", id)
		}
		e = &rulesEntry{}
	default:
		// Keep what was known (or the defaults) until the next read.
		c.log.Warn("cannot read a launch's compare rules; using the last known ones", "launch_id", id, "err", err)
		if e == nil {
			e = &rulesEntry{}
		}
	}
	e = &rulesEntry{rev: e.rev, rs: e.rs, checked: now}
	c.store(id, e)
	return e.rs, e.rev
}

// compile compiles a launch's rules. Stored launches were validated when
// written, so an error means rules written around the API (or by a newer
// version): the launch is compared with the defaults, logged once per
// revision.
func (c *rulesCache) compile(l *launch.Launch) *rulesEntry {
	if l.Compare.IsZero() {
		return &rulesEntry{rev: l.Revision}
	}
	rs, err := compare.Compile(l.Compare)
	if err != nil {
		c.log.Error("a launch's compare rules do not compile; using the defaults", "launch_id", l.ID,
			"revision", l.Revision, "err", err)
		return &rulesEntry{rev: l.Revision}
	}
	return &rulesEntry{rev: l.Revision, rs: rs}
}

func (c *rulesCache) store(id string, e *rulesEntry) {
	if _, ok := c.entries[id]; !ok && len(c.entries) >= maxRuleEntries {
		clear(c.entries)
	}
	c.entries[id] = e
}
