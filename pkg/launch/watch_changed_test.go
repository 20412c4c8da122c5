package launch

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// Changed is closed when a new snapshot is swapped in, so a reader that
// takes the channel before reading the snapshot sees every change.
func TestWatcherChangedSignalsEverySnapshot(t *testing.T) {
	ctx := testenv.Context(t)
	s, kv, nc, _ := openStoreConn(t)
	w := NewWatcher(kv, nc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	initial := w.Changed()
	go w.Run(ctx)
	select {
	case <-initial: // the initial values of the (empty) bucket
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed by the initial snapshot")
	}
	<-w.Ready()

	ch := w.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed without a new snapshot")
	default:
	}
	l, err := s.Create(ctx, Launch{Name: "a", ShadowURL: "http://s", SamplePercent: 5})
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("Changed not closed after a launch was created")
		}
		if w.Snapshot().ByID[l.ID] != nil {
			break
		}
		ch = w.Changed()
	}
	ch = w.Changed()
	if _, err := s.Update(ctx, l.ID, func(l *Launch) error { l.Status = StatusRolledBack; return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed after a rollback")
	}
	if got := w.Snapshot().ByID[l.ID]; got.Status != StatusRolledBack || len(w.Snapshot().Mirrored[DefaultService]) != 0 {
		t.Fatalf("after Changed the snapshot has %+v", got)
	}
}
