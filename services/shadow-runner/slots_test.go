package runner

import (
	"fmt"
	"time"

	"github.com/darklaunch/darklaunch/pkg/testenv"
	"sync/atomic"
	"testing"
)

func TestReplaySlotsBoundAndOrder(t *testing.T) {
	p := newReplaySlots(3)
	stop := p.run()
	defer stop()
	var running, most atomic.Int32
	release := make(chan struct{})
	done := make([]bool, 10)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		p.each(len(done), func(i int) {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
			running.Add(-1)
			done[i] = true
		})
	}()
	// All three slots fill before anything is released.
	testenv.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n := running.Load(); n != 3 {
			return fmt.Errorf("%d replays running, want 3", n)
		}
		return nil
	})
	for range done {
		release <- struct{}{}
	}
	<-finished
	if m := most.Load(); m != 3 {
		t.Errorf("at most %d replays ran at once, want 3 (the slots)", m)
	}
	for i, ok := range done {
		if !ok {
			t.Errorf("job %d did not run", i)
		}
	}
}

func TestReplaySlotsPanicReachesTheCaller(t *testing.T) {
	p := newReplaySlots(2)
	stop := p.run()
	defer stop()
	var ran atomic.Int32
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("a replay's panic did not reach the caller")
			}
		}()
		p.each(4, func(i int) {
			ran.Add(1)
			if i == 1 {
				panic("boom")
			}
		})
	}()
	if n := ran.Load(); n != 4 {
		t.Errorf("%d of 4 replays ran, want all: a panic must not stop the others", n)
	}
	// The slots survive the panic.
	var after atomic.Int32
	p.each(5, func(int) { after.Add(1) })
	if n := after.Load(); n != 5 {
		t.Errorf("%d of 5 replays ran after a panic, want 5", n)
	}
}

func TestReplaySlotsStopWaits(t *testing.T) {
	p := newReplaySlots(2)
	stop := p.run()
	var finished atomic.Bool
	started := make(chan struct{})
	go p.each(1, func(int) {
		close(started)
		for range 1000 {
			_ = make([]byte, 64)
		}
		finished.Store(true)
	})
	<-started
	stop()
	if !finished.Load() {
		t.Error("stop returned before the replay in progress finished")
	}
}
