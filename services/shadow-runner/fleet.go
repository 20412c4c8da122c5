package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sourcegraph/conc"

	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// RunnersBucket is the KV bucket every runner heartbeats into; the number
// of live keys is the number of runners sharing each launch's max_rps.
const RunnersBucket = "darklaunch_runners"

// Heartbeat is the value of a runner's key in RunnersBucket.
type Heartbeat struct {
	ID          string    `json:"id"`
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
}

// openRunnersBucket creates the bucket or brings its max age in line with
// ttl. The bucket's MaxAge is what makes a dead runner stop counting: its
// key is removed ttl after its last heartbeat.
func openRunnersBucket(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.KeyValue, error) {
	return stream.OpenKV(ctx, js, RunnersBucket,
		"darklaunch shadow-runner heartbeats, one key per live runner (shares max_rps)", ttl)
}

// runnerKey turns a runner id into a KV key: characters a key cannot hold
// become '_', and so does a dot that would start, end or double a subject
// token. A changed id gets a hash of the original appended, so two ids that
// differ only in such characters still get distinct keys (and count as two
// runners).
func runnerKey(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=':
			b.WriteByte(c)
		case c == '.' && i > 0 && i < len(id)-1 && id[i-1] != '.':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	key := b.String()
	if key == id && key != "" {
		return key
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return fmt.Sprintf("%s-%08x", key, h.Sum32())
}

// fleet tracks this runner's membership in RunnersBucket and counts the
// live runners. The count comes from two sources: a key listing every
// interval, which is the truth (it sees keys that expired, which a watch
// does not report), and a watch, which sees a runner joining or leaving at
// once instead of at the next listing. Joins matter most: until the others
// count a new runner, the fleet's total can exceed the cap.
type fleet struct {
	kv       jetstream.KeyValue
	nc       *nats.Conn
	log      *slog.Logger
	m        *metrics
	id, key  string
	started  time.Time
	interval time.Duration
	// stepTimeout bounds one heartbeat or listing: short enough that a
	// hung call cannot hold the next heartbeat back past the key's max age.
	stepTimeout time.Duration

	n atomic.Int64 // live runners, this one included: always at least 1

	mu sync.Mutex
	// listed holds the keys of the last listing; joined and left the keys
	// the watch saw put or deleted since that listing started, by when.
	listed       map[string]bool
	joined, left map[string]time.Time
	ownRev       uint64 // revision of this runner's last heartbeat
	collision    bool   // another process wrote this runner's key
}

func newFleet(kv jetstream.KeyValue, nc *nats.Conn, cfg *Config, m *metrics, log *slog.Logger) *fleet {
	f := &fleet{
		kv: kv, nc: nc, log: log, m: m,
		id: cfg.ID, key: runnerKey(cfg.ID), started: time.Now().UTC(), interval: cfg.HeartbeatInterval,
		stepTimeout: min(publishTimeout, cfg.HeartbeatTTL/4),
		listed:      map[string]bool{}, joined: map[string]time.Time{}, left: map[string]time.Time{},
	}
	f.n.Store(1)
	return f
}

// runners is the number of live runners, this one included.
func (f *fleet) runners() int { return int(f.n.Load()) }

// join writes the first heartbeat and lists the fleet, so the runner
// starts with the right share instead of the whole cap.
func (f *fleet) join(ctx context.Context) error {
	if err := f.heartbeat(ctx); err != nil {
		return err
	}
	return f.list(ctx)
}

// run refreshes the heartbeat and the listing every interval and watches
// the bucket until ctx is done, then deletes this runner's key so the
// others take over its share at once. tick runs after each listing.
func (f *fleet) run(ctx context.Context, tick func()) {
	var wg conc.WaitGroup
	wg.Go(func() { f.watchLoop(ctx) })
	defer wg.Wait()
	defer f.leave()

	retry.Every(ctx, f.interval, func() {
		f.beat(ctx)
		tick()
	})
}

// beat writes a heartbeat and lists the fleet, each bounded by stepTimeout.
func (f *fleet) beat(ctx context.Context) {
	hctx, cancel := context.WithTimeout(ctx, f.stepTimeout)
	err := f.heartbeat(hctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		f.m.heartbeatFailed.Inc()
		f.log.Warn("runner heartbeat failed; others may stop counting this runner", "err", err)
	}
	lctx, cancel := context.WithTimeout(ctx, f.stepTimeout)
	err = f.list(lctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		f.log.Warn("listing runners failed; keeping the last count", "runners", f.runners(), "err", err)
	}
}

// heartbeat puts this runner's key. A key whose revision is not the one
// this runner wrote last was written by another process with the same
// RUNNER_ID: both then count as one, and the fleet can exceed the cap.
func (f *fleet) heartbeat(ctx context.Context) error {
	data, err := json.Marshal(Heartbeat{ID: f.id, StartedAt: f.started, HeartbeatAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	f.mu.Lock()
	last := f.ownRev
	f.mu.Unlock()
	if last != 0 {
		e, err := f.kv.Get(ctx, f.key)
		switch {
		case err == nil && e.Revision() != last:
			f.noteCollision(e.Value())
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
			return err
		}
	}
	rev, err := f.kv.Put(ctx, f.key, data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.ownRev = rev
	f.mu.Unlock()
	return nil
}

func (f *fleet) noteCollision(value []byte) {
	var other Heartbeat
	_ = json.Unmarshal(value, &other)
	if other.StartedAt.Equal(f.started) {
		return // this runner's own write whose reply was lost
	}
	f.mu.Lock()
	first := !f.collision
	f.collision = true
	f.mu.Unlock()
	f.m.idCollisions.Inc()
	if first {
		f.log.Error("another runner heartbeats under the same RUNNER_ID; give each process its own id, or max_rps is shared among too few runners",
			"key", f.key, "other_started_at", other.StartedAt)
	}
}

// list replaces the known keys with a fresh listing, keeping what the
// watch saw after the listing started (the listing may predate it).
func (f *fleet) list(ctx context.Context) error {
	start := time.Now()
	keys, err := f.kv.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return err
	}
	listed := make(map[string]bool, len(keys))
	for _, k := range keys {
		listed[k] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed = listed
	for k, at := range f.joined {
		if at.Before(start) {
			delete(f.joined, k)
		}
	}
	for k, at := range f.left {
		if at.Before(start) {
			delete(f.left, k)
		}
	}
	f.recount()
	return nil
}

// recount publishes the live runner count; f.mu must be held.
func (f *fleet) recount() {
	n := 0
	for k := range f.listed {
		if _, gone := f.left[k]; !gone && k != f.key {
			n++
		}
	}
	for k := range f.joined {
		if !f.listed[k] && k != f.key {
			n++
		}
	}
	n++ // this runner, whether or not its own key is visible
	if old := f.n.Swap(int64(n)); old != int64(n) {
		f.m.runners.Set(float64(n))
		f.log.Info("live runners changed; max_rps shares follow", "runners", n, "was", old)
	}
}

// watchLoop keeps a watch on the bucket until ctx is done, restarting it
// after failures and reconnects (the watch is an ephemeral consumer that a
// server restart may drop silently). The listing covers the gaps.
func (f *fleet) watchLoop(ctx context.Context) {
	_ = stream.KVWatch{
		What: "runners",
		Start: func(ctx context.Context) (jetstream.KeyWatcher, error) {
			return f.kv.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.MetaOnly())
		},
		Entry: func(e jetstream.KeyValueEntry) {
			if e != nil {
				f.seen(e.Key(), e.Operation() == jetstream.KeyValuePut)
			}
		},
	}.Run(ctx, f.nc, f.log)
}

// seen records a key put (a runner joined or heartbeated) or deleted (a
// runner left) as the watch reports it.
func (f *fleet) seen(key string, put bool) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if put {
		if f.listed[key] {
			delete(f.left, key)
		} else {
			f.joined[key] = now
		}
	} else {
		delete(f.joined, key)
		if f.listed[key] {
			f.left[key] = now
		}
	}
	f.recount()
}

// leave deletes this runner's key, so the others count one runner fewer
// at once rather than after the key's max age.
func (f *fleet) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := f.kv.Delete(ctx, f.key); err != nil {
		f.log.Warn("could not delete this runner's heartbeat; it expires by itself", "key", f.key, "err", err)
	}
}
