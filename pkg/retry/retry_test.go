package retry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBackoffGrowsWithJitterWithinBounds(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, Jitter: true}
	prevCap := time.Duration(0)
	for i := range 20 {
		d := b.Next()
		if d < b.cur/2 || d > b.cur || b.cur > b.Max || b.cur < prevCap {
			t.Fatalf("step %d: wait %v with cap %v", i, d, b.cur)
		}
		prevCap = b.cur
	}
	if b.cur != time.Second {
		t.Errorf("cap %v, want the max", b.cur)
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}

func TestBackoffWithoutJitterDoubles(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", got, want)
		}
	}
}

func TestUntilRetriesUntilSuccess(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	calls := 0
	ok := Until(context.Background(), log, "open the thing", Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}, time.Minute,
		func(ctx context.Context) error {
			calls++
			if _, ok := ctx.Deadline(); !ok {
				t.Error("attempt without a deadline")
			}
			if calls < 3 {
				return errors.New("down")
			}
			return nil
		})
	if !ok || calls != 3 {
		t.Fatalf("Until = %v after %d calls, want true after 3", ok, calls)
	}
	if n := strings.Count(logs.String(), "what=\"open the thing\""); n != 2 {
		t.Errorf("%d failures logged, want 2:\n%s", n, logs.String())
	}
}

func TestUntilStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	ok := Until(ctx, nil, "never", Backoff{Min: time.Millisecond, Max: time.Millisecond}, 0, func(actx context.Context) error {
		calls++
		if _, ok := actx.Deadline(); ok {
			t.Error("attempt 0 should leave the context unbounded")
		}
		if calls == 3 {
			cancel()
		}
		return errors.New("down")
	})
	if ok || calls != 3 {
		t.Fatalf("Until = %v after %d calls, want false after 3", ok, calls)
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep with a live context reported false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with a done context reported true")
	}
}

func TestGet(t *testing.T) {
	calls := 0
	v, ok := Get(context.Background(), nil, "x", Backoff{Min: time.Millisecond, Max: time.Millisecond}, time.Second,
		func(context.Context) (int, error) {
			calls++
			if calls < 3 {
				return 0, errors.New("not yet")
			}
			return 42, nil
		})
	if !ok || v != 42 || calls != 3 {
		t.Fatalf("Get = %d, %v after %d calls; want 42, true after 3", v, ok, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := Get(ctx, nil, "x", Backoff{Min: time.Millisecond}, time.Second,
		func(context.Context) (int, error) { return 0, errors.New("never") }); ok {
		t.Fatal("Get succeeded with a cancelled context")
	}
}

func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	done := make(chan struct{})
	go func() {
		Every(ctx, time.Millisecond, func() {
			if n++; n == 3 {
				cancel()
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	if n != 3 {
		t.Errorf("f called %d times, want 3 (none after the cancel)", n)
	}
}
