// Package retry repeats an operation with exponential backoff until it
// succeeds or its context ends. Every service waits for NATS, ClickHouse or
// Redis this way instead of failing when one is momentarily down.
package retry

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Backoff yields growing waits: Min after the first failure, then twice the
// last one, up to Max. The zero value of its state is the start; Reset
// returns to it after a success.
type Backoff struct {
	Min, Max time.Duration
	// Jitter draws each wait from the upper half of its step, so that many
	// processes retrying the same server do not retry in step.
	Jitter bool

	cur time.Duration
}

// Next is the wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur = min(2*b.cur, b.Max)
	}
	if b.Jitter {
		return b.cur/2 + rand.N(b.cur/2+1)
	}
	return b.cur
}

// Reset makes the next wait Min again.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d or until ctx ends; it reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Until calls f until it succeeds or ctx ends, waiting as b says between
// attempts and logging each failure (when log is not nil) with what it was
// trying to do. Each call of f gets a context bounded by attempt, or by ctx
// alone when attempt is 0. It reports whether f succeeded.
func Until(ctx context.Context, log *slog.Logger, what string, b Backoff, attempt time.Duration,
	f func(context.Context) error) bool {
	b.Reset()
	for n := 1; ; n++ {
		actx, cancel := bounded(ctx, attempt)
		err := f(actx)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d := b.Next()
		if log != nil {
			log.Warn("retrying", "what", what, "attempt", n, "in", d, "err", err)
		}
		if !Sleep(ctx, d) {
			return false
		}
	}
}

func bounded(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// Get is Until for a step that produces a value: it returns the value of
// the first successful attempt, and false if ctx ended first.
func Get[T any](ctx context.Context, log *slog.Logger, what string, b Backoff, attempt time.Duration,
	f func(context.Context) (T, error)) (T, bool) {
	var v T
	ok := Until(ctx, log, what, b, attempt, func(ctx context.Context) error {
		var err error
		v, err = f(ctx)
		return err
	})
	return v, ok
}

// Every calls f every d, the first time d from now, until ctx ends; it
// returns when ctx ends (never during a call of f). Periodic work (a
// heartbeat, a report) is written this way rather than as a ticker loop.
func Every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil { // select picks at random when both are ready
			return
		}
		f()
	}
}
