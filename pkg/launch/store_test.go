package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

func openStore(t *testing.T) (*Store, jetstream.KeyValue) {
	s, kv, _, _ := openStoreConn(t)
	return s, kv
}

func openStoreConn(t *testing.T) (*Store, jetstream.KeyValue, *nats.Conn, *testenv.JetStream) {
	t.Helper()
	srv := testenv.StartJetStream(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := OpenBucket(testenv.Context(t), js)
	if err != nil {
		t.Fatal(err)
	}
	return NewStore(kv), kv, nc, srv
}

func TestStoreCRUD(t *testing.T) {
	ctx := testenv.Context(t)
	s, _ := openStore(t)
	l, err := s.Create(ctx, Launch{Name: "a", ShadowURL: "http://s", SamplePercent: 10})
	if err != nil {
		t.Fatal(err)
	}
	if l.ID == "" || l.Status != StatusActive || l.CreatedAt.IsZero() || l.Revision == 0 {
		t.Fatalf("created %+v", l)
	}
	if _, err := s.Create(ctx, Launch{Name: "a", ShadowURL: "/rel"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid create: %v", err)
	}
	got, err := s.Get(ctx, l.ID)
	if err != nil || got.Name != "a" {
		t.Fatalf("get: %+v %v", got, err)
	}
	for _, id := range []string{"nope", "../etc", ""} {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("get %q: %v, want ErrNotFound", id, err)
		}
	}
	l2, _ := s.Create(ctx, Launch{Name: "b", ShadowURL: "http://s"})
	all, err := s.List(ctx)
	if err != nil || len(all) != 2 || all[0].ID != l2.ID {
		t.Fatalf("list: %v %v", all, err)
	}
}

// Concurrent updates from several writers are all applied: the store
// retries on a revision conflict instead of losing a write.
func TestStoreUpdateNoLostWrites(t *testing.T) {
	ctx := testenv.Context(t)
	s, _ := openStore(t)
	l, _ := s.Create(ctx, Launch{Name: "a", ShadowURL: "http://s"})
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Update(ctx, l.ID, func(l *Launch) error {
				l.Methods = append(l.Methods, fmt.Sprint(i))
				return nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _ := s.Get(ctx, l.ID)
	if len(got.Methods) != 3+10 {
		t.Fatalf("methods %v: some updates were lost", got.Methods)
	}
}

func TestWatcher(t *testing.T) {
	ctx, cancel := context.WithCancel(testenv.Context(t))
	defer cancel()
	s, kv, nc, _ := openStoreConn(t)
	before, _ := s.Create(ctx, Launch{Name: "before", ShadowURL: "http://s", SamplePercent: 5})
	w := NewWatcher(kv, nc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("watcher never became ready")
	}
	if got := w.Snapshot().Mirrored[DefaultService]; len(got) != 1 || got[0].ID != before.ID {
		t.Fatalf("initial snapshot %v", got)
	}
	other, _ := s.Create(ctx, Launch{Name: "other", Service: "billing", ShadowURL: "http://s", SamplePercent: 50})
	if _, err := s.Update(ctx, before.ID, func(l *Launch) error { l.Status = StatusRolledBack; return nil }); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		snap := w.Snapshot()
		if len(snap.Mirrored[DefaultService]) != 0 {
			return fmt.Errorf("rolled-back launch still mirrored")
		}
		if len(snap.Mirrored["billing"]) != 1 || snap.ByID[other.ID] == nil {
			return fmt.Errorf("new launch not seen")
		}
		return nil
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

// A NATS server restart kills the KV watch's ephemeral consumer; the
// watcher must notice the reconnect and see changes made afterwards.
func TestWatcherSurvivesServerRestart(t *testing.T) {
	ctx := testenv.Context(t)
	s, kv, nc, srv := openStoreConn(t)
	l, _ := s.Create(ctx, Launch{Name: "a", ShadowURL: "http://s", SamplePercent: 5})
	w := NewWatcher(kv, nc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go w.Run(ctx)
	<-w.Ready()
	srv.Stop()
	srv.Start()
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("not reconnected")
		}
		return nil
	})
	if _, err := s.Update(ctx, l.ID, func(l *Launch) error { l.Status = StatusPaused; return nil }); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := w.Snapshot().ByID[l.ID]; got == nil || got.Status != StatusPaused {
			return fmt.Errorf("watcher still sees %+v after the restart", got)
		}
		return nil
	})
}
