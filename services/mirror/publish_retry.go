package mirror

import (
	"container/heap"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// retryHeap orders the batches waiting for a retry by when they are due.
type retryHeap []*batch

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*batch)) }
func (h *retryHeap) Pop() any {
	old := *h
	b := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return b
}

// park puts a failed batch on the retry list; false once the list is
// closed (the drain is over).
func (p *publishing) park(b *batch) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	heap.Push(&p.retries, b)
	return true
}

// due takes the batches due at now off the retry list, and says when the
// next one is due (zero: none waiting).
func (p *publishing) due(now time.Time) (due []*batch, next time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.retries) > 0 && !p.retries[0].due.After(now) {
		due = append(due, heap.Pop(&p.retries).(*batch))
	}
	if len(p.retries) > 0 {
		next = p.retries[0].due
	}
	return due, next
}

// allDue makes every waiting batch due now (NATS is back).
func (p *publishing) allDue(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.retries {
		b.due = now
	}
}

// idle reports whether nothing is in flight or waiting for a retry.
func (p *publishing) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inflight) == 0 && len(p.retries) == 0
}

// close ends retrying and returns the batches still waiting: from now
// on a failure is a shutdown drop.
func (p *publishing) close() []*batch {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	left := p.retries
	p.retries = nil
	return left
}

// retrier sends the batches of the retry list again as they come due, and
// all of them at once when NATS reconnects. Once draining is closed it
// returns at the drain deadline, or earlier once the batchers are done and
// nothing is in flight or waiting for a retry.
func (s *Service) retrier(js jetstream.JetStream, nc *nats.Conn, draining, batchersDone <-chan struct{}) {
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var deadline <-chan time.Time
	batching := true
	for {
		due, next := s.pub.due(time.Now())
		for _, b := range due {
			s.stats.retries.Inc()
			s.send(js, b)
		}
		if !batching && s.pub.idle() {
			return
		}
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-s.pub.wake:
		case <-timer.C:
		case <-reconnected:
			s.pub.allDue(time.Now())
		case <-draining:
			draining = nil
			deadline = time.After(time.Until(s.drainDeadline))
		case <-batchersDone:
			batchersDone = nil
			batching = false
		case <-deadline:
			return
		}
	}
}
