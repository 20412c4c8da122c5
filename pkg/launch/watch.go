package launch

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
)

// Watcher keeps an up-to-date, lock-free snapshot of all launches by
// watching the KV bucket. Readers call Snapshot on the hot path: it is an
// atomic load, never a network call. When NATS is unreachable the last known
// snapshot stays in force.
type Watcher struct {
	kv    jetstream.KeyValue
	log   *slog.Logger
	snap  atomic.Pointer[Snapshot]
	ready chan struct{}
	once  sync.Once
}

// Snapshot is an immutable view of the launches at one moment.
type Snapshot struct {
	// ByID holds every launch.
	ByID map[string]*Launch
	// Mirrored holds, per service, the launches a tap should sample now.
	Mirrored map[string][]*Launch
}

// NewWatcher returns a watcher; call Run to start it.
func NewWatcher(kv jetstream.KeyValue, log *slog.Logger) *Watcher {
	w := &Watcher{kv: kv, log: log, ready: make(chan struct{})}
	w.snap.Store(&Snapshot{ByID: map[string]*Launch{}, Mirrored: map[string][]*Launch{}})
	return w
}

// Snapshot returns the current view. It never blocks.
func (w *Watcher) Snapshot() *Snapshot { return w.snap.Load() }

// Ready is closed once the initial values of the bucket have been read.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Run watches the bucket until ctx is done. It returns ctx's error, or the
// error that stopped the watch from starting.
func (w *Watcher) Run(ctx context.Context) error {
	watcher, err := w.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer watcher.Stop()
	byID := map[string]*Launch{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-watcher.Updates():
			if !ok {
				return ctx.Err()
			}
			if e == nil { // end of the initial values
				w.publish(byID)
				w.once.Do(func() { close(w.ready) })
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				delete(byID, e.Key())
			} else {
				var l Launch
				if err := json.Unmarshal(e.Value(), &l); err != nil {
					w.log.Warn("ignoring launch that is not valid JSON", "key", e.Key(), "err", err)
					continue
				}
				l.Revision = e.Revision()
				byID[e.Key()] = &l
			}
			if e.Delta() == 0 {
				w.publish(byID)
			}
		}
	}
}

// publish swaps in a new snapshot built from byID (copied: the map keeps
// changing under the watch loop).
func (w *Watcher) publish(byID map[string]*Launch) {
	s := &Snapshot{ByID: make(map[string]*Launch, len(byID)), Mirrored: map[string][]*Launch{}}
	for id, l := range byID {
		s.ByID[id] = l
		if l.Mirrored() {
			s.Mirrored[l.Service] = append(s.Mirrored[l.Service], l)
		}
	}
	w.snap.Store(s)
}
