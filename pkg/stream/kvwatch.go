package stream

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/retry"
)

// KVWatch keeps a KV watch running. A KV watch is an ephemeral consumer on
// the server: after a reconnect (a server restart, a failover) it may be
// gone without the client noticing for a long time, so Run starts it afresh
// on every reconnect, and with backoff whenever it ends or cannot start.
type KVWatch struct {
	// Start opens the watch, e.g. kv.WatchAll(ctx).
	Start func(ctx context.Context) (jetstream.KeyWatcher, error)
	// Restarted is called before each (re)started watch delivers its
	// initial values, so the caller can rebuild its state from them.
	Restarted func()
	// Entry gets every entry; nil marks the end of the initial values.
	Entry func(jetstream.KeyValueEntry)
	// What names the watch in logs.
	What string
}

var errReconnected = errors.New("reconnected")

// Run watches until ctx is done, then returns ctx's error. nc is the
// connection under the bucket (nil: no restart on reconnect).
func (w KVWatch) Run(ctx context.Context, nc *nats.Conn, log *slog.Logger) error {
	reconnected := make(chan nats.Status, 1)
	if nc != nil {
		reconnected = nc.StatusChanged(nats.CONNECTED)
		defer nc.RemoveStatusListener(reconnected)
	}
	bo := retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := w.once(ctx, reconnected)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errReconnected) {
			log.Info("NATS reconnected; restarting the watch", "watch", w.What)
			bo.Reset()
			continue
		}
		d := bo.Next()
		log.Warn("watch stopped; restarting it", "watch", w.What, "in", d, "err", err)
		if !retry.Sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// once runs one watch until ctx is done, the watch ends, or the
// connection reconnects.
func (w KVWatch) once(ctx context.Context, reconnected <-chan nats.Status) error {
	// A reconnect from before this watch started is already accounted for.
	select {
	case <-reconnected:
	default:
	}
	kw, err := w.Start(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = kw.Stop() }()
	if w.Restarted != nil {
		w.Restarted()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-reconnected:
			return errReconnected
		case e, ok := <-kw.Updates():
			if !ok {
				return errors.New("KV watch ended")
			}
			w.Entry(e)
		}
	}
}
