package testenv

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// StopTimeout is how long Running.Stop waits for a service's Run to return
// once its context is cancelled.
const StopTimeout = 30 * time.Second

// Running is a service's Run going on in the background; see Run.
type Running struct {
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // run's result, once done is closed
	once    sync.Once
	stopErr error
	stopped atomic.Bool
}

// Run calls run (a service's Run method) in a goroutine with a context
// that Stop cancels. If the test has not stopped it by its end, it is
// stopped then, and an error from it fails the test.
func Run(t testing.TB, run func(context.Context) error) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		if r.stopped.Load() {
			return // the test saw the result itself
		}
		if err := r.Stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// Cancel cancels run's context without waiting for it to return.
func (r *Running) Cancel() { r.cancel() }

// Stop cancels run's context and waits for it to return, at most
// StopTimeout. It returns run's error, or one saying that it did not
// return; later calls return the same without waiting again.
func (r *Running) Stop() error {
	r.stopped.Store(true)
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
			r.stopErr = r.err
		case <-time.After(StopTimeout):
			r.stopErr = fmt.Errorf("Run did not return within %s of cancel", StopTimeout)
		}
	})
	return r.stopErr
}
