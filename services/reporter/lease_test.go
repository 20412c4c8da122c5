package reporter

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// crashable is a lease set whose holder, once crashed, dies without giving
// its leases up (a crash, a network partition): only the TTL frees them.
type crashable struct {
	*kvLeases
	crashed *atomic.Bool
}

func (c crashable) Release(ctx context.Context, id string) {
	if !c.crashed.Load() {
		c.kvLeases.Release(ctx, id)
	}
}

// leaseNode is one reporter process's controller, with its own NATS
// connection, over the real launch store and lease bucket.
type leaseNode struct {
	name     string
	leases   *kvLeases
	verdicts atomic.Int64 // verdicts computed: only the driver computes any
	crashed  atomic.Bool
	cancel   context.CancelFunc
	done     chan struct{}
}

func startLeaseNode(t *testing.T, url, name string, ttl, interval time.Duration) *leaseNode {
	t.Helper()
	_, js := testenv.Connect(t, url)
	ctx := testenv.Context(t)
	kv, err := launch.OpenBucket(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	lkv, err := OpenLeases(ctx, js, ttl)
	if err != nil {
		t.Fatal(err)
	}
	n := &leaseNode{name: name, leases: newKVLeases(lkv, name), done: make(chan struct{})}
	ls := crashable{n.leases, &n.crashed}
	c := &controller{
		actor: "controller:" + name, store: launch.NewStore(kv), leases: ls,
		verdict: func(context.Context, *launch.Launch) (*api.Verdict, error) {
			n.verdicts.Add(1)
			return verdictOf(api.VerdictInconclusive, 0, "no pairs"), nil
		},
		audit: func(api.AuditEntry) {}, interval: interval, timeout: 5 * time.Second, log: discardLogger(), noted: map[string]string{},
	}
	rctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { defer close(n.done); c.Run(rctx) }()
	t.Cleanup(n.stop)
	return n
}

// crash stops the node without releasing its leases.
func (n *leaseNode) crash() {
	n.crashed.Store(true)
	n.stop()
}

func (n *leaseNode) stop() {
	n.cancel()
	<-n.done
}

func (n *leaseNode) holds(id string) bool {
	for _, h := range n.leases.Held() {
		if h == id {
			return true
		}
	}
	return false
}

// TestLeaseFailover: two controllers on one real JetStream; exactly one
// drives a launch; when it dies without releasing, the other takes over
// within the lease TTL plus one tick; when a holder stops cleanly it
// releases, and the other takes over at its next tick.
func TestLeaseFailover(t *testing.T) {
	// A TTL 20 ticks long: a holder alive on a loaded machine (-race, 2
	// cores, other tests beside) renews long before its lease could lapse.
	const ttl, interval = 2 * time.Second, 100 * time.Millisecond
	js := testenv.StartJetStream(t)
	ctx := testenv.Context(t)
	nc, err := nats.Connect(js.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	jsc, _ := jetstream.New(nc)
	kv, err := launch.OpenBucket(ctx, jsc)
	if err != nil {
		t.Fatal(err)
	}
	store := launch.NewStore(kv)
	l, err := store.Create(ctx, launch.Launch{Name: "leased", ShadowURL: "http://s", SamplePercent: 1, StepStartedAt: time.Now(),
		Ramp: &launch.Ramp{Steps: steps(1, time.Hour, 10, time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	// A launch without ramp is nobody's business.
	other, err := store.Create(ctx, launch.Launch{Name: "plain", ShadowURL: "http://s", SamplePercent: 1})
	if err != nil {
		t.Fatal(err)
	}

	a := startLeaseNode(t, js.URL(), "a", ttl, interval)
	b := startLeaseNode(t, js.URL(), "b", ttl, interval)
	var holder, standby *leaseNode
	testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		switch ah, bh := a.holds(l.ID), b.holds(l.ID); {
		case ah && bh:
			t.Fatal("both controllers hold the lease")
		case ah:
			holder, standby = a, b
		case bh:
			holder, standby = b, a
		default:
			return fmt.Errorf("nobody holds the lease yet")
		}
		return nil
	})
	// Over several renewals (longer than the TTL) the same one holds it,
	// and only it computes verdicts.
	base := standby.verdicts.Load()
	deadline := time.Now().Add(2 * ttl)
	for time.Now().Before(deadline) {
		if !holder.holds(l.ID) || standby.holds(l.ID) {
			t.Fatalf("the lease moved while its holder was alive: %s %v, %s %v", holder.name, holder.holds(l.ID), standby.name, standby.holds(l.ID))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if holder.verdicts.Load() < 10 || standby.verdicts.Load() != base {
		t.Fatalf("verdicts: holder %d, standby %d (was %d): exactly one controller must drive", holder.verdicts.Load(), standby.verdicts.Load(), base)
	}
	if a.holds(other.ID) || b.holds(other.ID) {
		t.Fatal("a launch without ramp got a lease")
	}

	// The holder dies: no renewal, no release.
	holder.crash()
	died := time.Now()
	testenv.CheckFor(t, ttl+5*time.Second, 5*time.Millisecond, func() error {
		if !standby.holds(l.ID) {
			return fmt.Errorf("%s has not taken over", standby.name)
		}
		return nil
	})
	took := time.Since(died)
	t.Logf("takeover after the holder died: %s (TTL %s, tick %s)", took, ttl, interval)
	if took > ttl+interval+ttl/2 {
		t.Fatalf("takeover took %s, more than TTL %s + tick %s (+TTL/2 for the server's expiry timer and scheduling on a loaded machine)", took, ttl, interval)
	}
	if took < ttl/2 {
		t.Fatalf("takeover after %s: the dead holder's lease did not last", took)
	}
	v := standby.verdicts.Load()
	testenv.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if standby.verdicts.Load() <= v {
			return fmt.Errorf("the new holder does not drive")
		}
		return nil
	})

	// A clean stop releases: a new node waits while the lease is held, and
	// takes over at its next tick once its holder stopped cleanly.
	c := startLeaseNode(t, js.URL(), "c", ttl, interval)
	time.Sleep(3 * interval)
	if c.holds(l.ID) {
		t.Fatal("a new node took a held lease")
	}
	// Released, not expired: the bucket's TTL drops an expired key
	// silently, while a release is a delete the watch sees. That proves
	// the release whatever the machine's load, where a wall-clock bound
	// on the takeover would not.
	watch, err := c.leases.kv.Watch(ctx, l.ID, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	standby.stop()
	stopped := time.Now()
	released := time.After(ttl + 5*time.Second)
	for deleted := false; !deleted; {
		select {
		case e := <-watch.Updates():
			// Renewals written before the stop may come first.
			deleted = e != nil && e.Operation() == jetstream.KeyValueDelete
		case <-released:
			t.Fatal("a clean stop did not release the lease")
		}
	}
	testenv.CheckFor(t, ttl+5*time.Second, 5*time.Millisecond, func() error {
		if !c.holds(l.ID) {
			return fmt.Errorf("c has not taken over")
		}
		return nil
	})
	t.Logf("takeover after a clean stop: %s", time.Since(stopped))
	c.stop()
	if _, err := c.leases.kv.Get(ctx, l.ID); err == nil {
		t.Fatal("a clean stop left the lease in place")
	}
}

// lostAnswers is a lease bucket whose renewals are stored but answered
// with an error, as when the answer is lost or the caller gave up.
type lostAnswers struct{ jetstream.KeyValue }

func (l lostAnswers) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if _, err := l.KeyValue.Update(ctx, key, value, rev); err != nil {
		return 0, err
	}
	return 0, context.DeadlineExceeded
}

// A renewal whose answer was lost leaves the lease ours: the next Hold
// takes it back and a Release deletes it, instead of both waiting for the
// TTL (a clean-clone run saw a stopping reporter keep its lease so).
func TestLeaseRenewalAnswerLost(t *testing.T) {
	js := testenv.StartJetStream(t)
	ctx := testenv.Context(t)
	_, jsc := testenv.Connect(t, js.URL())
	kv, err := OpenLeases(ctx, jsc, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	k := newKVLeases(lostAnswers{kv}, "me")
	if ok, err := k.Hold(ctx, "l1"); !ok || err != nil {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if ok, err := k.Hold(ctx, "l1"); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("renewal with a lost answer: %v %v", ok, err)
	}
	if held := k.Held(); len(held) != 1 {
		t.Fatalf("held %v: the lease may still be ours and must stay listed", held)
	}
	if ok, err := k.Hold(ctx, "l1"); !ok || err != nil {
		t.Fatalf("the next tick does not take its own lease back: %v %v", ok, err)
	}
	_, _ = k.Hold(ctx, "l1") // stored again, answer lost again
	k.Release(ctx, "l1")
	if _, err := kv.Get(ctx, "l1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("after Release the key is still there: %v", err)
	}
	// Another reporter's key is never taken or deleted.
	other := newKVLeases(kv, "other")
	if ok, _ := other.Hold(ctx, "l2"); !ok {
		t.Fatal("other could not acquire l2")
	}
	if ok, _ := k.Hold(ctx, "l2"); ok {
		t.Fatal("took another reporter's lease")
	}
	k.Release(ctx, "l2")
	if _, err := kv.Get(ctx, "l2"); err != nil {
		t.Fatalf("another reporter's lease was deleted: %v", err)
	}
}
