package launch

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/stream"
)

// Watcher keeps an up-to-date, lock-free snapshot of all launches by
// watching the KV bucket. Readers call Snapshot on the hot path: it is an
// atomic load, never a network call. When NATS is unreachable the last known
// snapshot stays in force.
type Watcher struct {
	kv    jetstream.KeyValue
	nc    *nats.Conn
	log   *slog.Logger
	snap  atomic.Pointer[Snapshot]
	ready chan struct{}
	once  sync.Once
	// changed is closed (and replaced) each time a snapshot is swapped in.
	changed atomic.Pointer[chan struct{}]
}

// Snapshot is an immutable view of the launches at one moment.
type Snapshot struct {
	// ByID holds every launch.
	ByID map[string]*Launch
	// Mirrored holds, per service, the launches a tap should sample now.
	Mirrored map[string][]*Launch
	// Live holds, per service, the launches whose new version serves a
	// share of live traffic now.
	Live map[string][]*Launch
}

// NewWatcher returns a watcher; call Run to start it. nc is the connection
// under kv: the watch is restarted whenever it reconnects.
func NewWatcher(kv jetstream.KeyValue, nc *nats.Conn, log *slog.Logger) *Watcher {
	w := &Watcher{kv: kv, nc: nc, log: log, ready: make(chan struct{})}
	w.snap.Store(&Snapshot{ByID: map[string]*Launch{}, Mirrored: map[string][]*Launch{}, Live: map[string][]*Launch{}})
	ch := make(chan struct{})
	w.changed.Store(&ch)
	return w
}

// Snapshot returns the current view. It never blocks.
func (w *Watcher) Snapshot() *Snapshot { return w.snap.Load() }

// Changed returns a channel that is closed when the next snapshot is
// swapped in. Taking the channel before reading Snapshot and then waiting on
// it misses no change: readers that derive state from snapshots (a tap's
// routing table) can rebuild as soon as a rollback lands instead of polling.
func (w *Watcher) Changed() <-chan struct{} { return *w.changed.Load() }

// Ready is closed once the initial values of the bucket have been read.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Run watches the bucket until ctx is done, then returns ctx's error. The
// watch restarts on every NATS reconnect and whenever it breaks (see
// stream.KVWatch); the last snapshot stays in force meanwhile.
func (w *Watcher) Run(ctx context.Context) error {
	var byID map[string]*Launch
	return stream.KVWatch{
		What:  "launches",
		Start: func(ctx context.Context) (jetstream.KeyWatcher, error) { return w.kv.WatchAll(ctx) },
		// The initial values rebuild the whole state, deletions included.
		Restarted: func() { byID = map[string]*Launch{} },
		Entry: func(e jetstream.KeyValueEntry) {
			if e == nil { // end of the initial values
				w.publish(byID)
				w.once.Do(func() { close(w.ready) })
				return
			}
			if e.Operation() != jetstream.KeyValuePut {
				delete(byID, e.Key())
			} else {
				var l Launch
				if err := json.Unmarshal(e.Value(), &l); err != nil {
					w.log.Warn("ignoring launch that is not valid JSON", "key", e.Key(), "err", err)
					return
				}
				l.Revision = e.Revision()
				byID[e.Key()] = &l
			}
			if e.Delta() == 0 {
				w.publish(byID)
			}
		},
	}.Run(ctx, w.nc, w.log)
}

// publish swaps in a new snapshot built from byID (copied: the map keeps
// changing under the watch loop).
func (w *Watcher) publish(byID map[string]*Launch) {
	s := &Snapshot{ByID: make(map[string]*Launch, len(byID)), Mirrored: map[string][]*Launch{}, Live: map[string][]*Launch{}}
	for id, l := range byID {
		s.ByID[id] = l
		if l.Mirrored() {
			s.Mirrored[l.Service] = append(s.Mirrored[l.Service], l)
		}
		if l.Live() {
			s.Live[l.Service] = append(s.Live[l.Service], l)
		}
	}
	w.snap.Store(s)
	// Only the watch loop publishes, so swap-then-close needs no lock.
	next := make(chan struct{})
	close(*w.changed.Swap(&next))
}
