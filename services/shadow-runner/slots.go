package runner

import (
	"sync"

	"github.com/sourcegraph/conc/panics"
)

// replaySlots are the process's RUNNER_CONCURRENCY replay slots, each a
// long-lived goroutine. A goroutine per replay had to grow its stack to
// net/http's depth every time: about a tenth of the runner's CPU went to
// growing and copying stacks.
type replaySlots struct {
	work chan func()
	n    int
	wg   sync.WaitGroup
}

func newReplaySlots(n int) *replaySlots {
	return &replaySlots{work: make(chan func()), n: n}
}

// run starts the slots and returns the function that stops them. Stop
// only once nothing submits any more (after the stage's drain): it waits
// for the replays in progress.
func (p *replaySlots) run() (stop func()) {
	for range p.n {
		p.wg.Go(func() {
			for f := range p.work {
				f()
			}
		})
	}
	return func() {
		close(p.work)
		p.wg.Wait()
	}
}

// each runs f(0) … f(n-1), each in a slot as soon as one is free, taken in
// order (so deliveries are served about first come, first served), and
// returns when all are done. A panic in f reaches the caller once all are
// done, as conc.WaitGroup's would; the slot survives it.
func (p *replaySlots) each(n int, f func(i int)) {
	var pc panics.Catcher
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		p.work <- func() {
			defer wg.Done()
			pc.Try(func() { f(i) })
		}
	}
	wg.Wait()
	pc.Repanic()
}
