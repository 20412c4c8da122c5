package launch

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
// KV watch is an ephemeral consumer on the server: after a reconnect (a
// server restart, a failover) it may be gone without the client noticing for
// a long time, so Run starts it afresh on every reconnect, and retries with
// backoff when it cannot start. The last snapshot stays in force meanwhile.
func (w *Watcher) Run(ctx context.Context) error {
	reconnected := make(chan nats.Status, 1)
	if w.nc != nil {
		reconnected = w.nc.StatusChanged(nats.CONNECTED)
		defer w.nc.RemoveStatusListener(reconnected)
	}
	delay := 100 * time.Millisecond
	for {
		err := w.watch(ctx, reconnected)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errReconnected) {
			w.log.Info("NATS reconnected; restarting the launch watch")
			delay = 100 * time.Millisecond
			continue
		}
		w.log.Warn("launch watch stopped; restarting it", "in", delay, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

var errReconnected = errors.New("reconnected")

// watch runs one KV watch until ctx is done, the watch ends, or the
// connection reconnects.
func (w *Watcher) watch(ctx context.Context, reconnected <-chan nats.Status) error {
	// A reconnect from before this watch started is already accounted for.
	select {
	case <-reconnected:
	default:
	}
	watcher, err := w.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer watcher.Stop()
	// The initial values rebuild the whole state, deletions included.
	byID := map[string]*Launch{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-reconnected:
			return errReconnected
		case e, ok := <-watcher.Updates():
			if !ok {
				return errors.New("KV watch ended")
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
