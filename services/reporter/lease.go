package reporter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/stream"
)

// LeaseBucket is the NATS KV bucket of controller leases: one key per
// launch being driven, whose value is the id of the reporter driving it.
const LeaseBucket = "darklaunch_leases"

// OpenLeases creates (or updates) the lease bucket with the given TTL: a
// key not renewed for ttl disappears, which is how a dead reporter's leases
// free up.
func OpenLeases(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeaseBucket,
		Description: "darklaunch controller leases: one key per driven launch, the value is the reporter driving it",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.MemoryStorage,
		Replicas:    stream.Replicas(js),
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", LeaseBucket, err)
	}
	return kv, nil
}

// kvLeases are per-launch leases in the lease bucket. Create acquires a
// lease (it fails while another reporter's key exists); Update with the
// last revision renews it (it fails once anyone else wrote the key, or the
// key expired). Only the controller goroutine calls Hold and Release; Held
// may be called from anywhere.
type kvLeases struct {
	kv    jetstream.KeyValue
	owner string
	// errors counts failed lease operations (may be nil).
	errors func()

	mu   sync.Mutex
	held map[string]uint64 // launch id → revision of our last write
}

func newKVLeases(kv jetstream.KeyValue, owner string) *kvLeases {
	return &kvLeases{kv: kv, owner: owner, held: map[string]uint64{}}
}

// Hold renews the lease if this process holds it, else tries to acquire
// it. A renewal that fails means the lease was lost (it expired, or another
// reporter took it): the launch is not driven by this process any more
// unless it can acquire the lease afresh.
func (k *kvLeases) Hold(ctx context.Context, id string) (bool, error) {
	k.mu.Lock()
	rev, ok := k.held[id]
	k.mu.Unlock()
	if ok {
		nrev, err := k.kv.Update(ctx, id, []byte(k.owner), rev)
		if err == nil {
			k.set(id, nrev)
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			// The renewal may have been stored though its answer was
			// lost (a timeout, the shutdown's cancel): the lease stays
			// listed, not driven, so that a Release still deletes it.
			k.failed()
			return false, fmt.Errorf("renew lease of %s: %w", id, err)
		}
		k.drop(id)
	}
	nrev, err := k.kv.Create(ctx, id, []byte(k.owner))
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Our own key at a revision we did not see (a renewal whose
		// answer was lost) is still ours.
		if rev, ok := k.ours(ctx, id); ok {
			k.set(id, rev)
			return true, nil
		}
		return false, nil
	}
	if err != nil {
		k.failed()
		return false, fmt.Errorf("acquire lease of %s: %w", id, err)
	}
	k.set(id, nrev)
	return true, nil
}

// Release deletes the key if this process still holds it, so another
// reporter may take the launch at its next tick.
func (k *kvLeases) Release(ctx context.Context, id string) {
	k.mu.Lock()
	rev, ok := k.held[id]
	delete(k.held, id)
	k.mu.Unlock()
	if ok {
		// Only our own write may be deleted: if the lease was lost
		// meanwhile, the revision no longer matches and this fails.
		err := k.kv.Delete(ctx, id, jetstream.LastRevision(rev))
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Renewed since the revision we know, by us (an answer
			// lost) or by another reporter after it expired.
			if cur, mine := k.ours(ctx, id); mine {
				err = k.kv.Delete(ctx, id, jetstream.LastRevision(cur))
			} else {
				err = nil
			}
		}
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			k.failed()
		}
	}
}

// ours returns the key's revision when its value names this process.
func (k *kvLeases) ours(ctx context.Context, id string) (uint64, bool) {
	e, err := k.kv.Get(ctx, id)
	if err != nil || string(e.Value()) != k.owner {
		return 0, false
	}
	return e.Revision(), true
}

// Held lists the launches this process holds the lease of.
func (k *kvLeases) Held() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	ids := make([]string, 0, len(k.held))
	for id := range k.held {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (k *kvLeases) set(id string, rev uint64) {
	k.mu.Lock()
	k.held[id] = rev
	k.mu.Unlock()
}

func (k *kvLeases) drop(id string) {
	k.mu.Lock()
	delete(k.held, id)
	k.mu.Unlock()
}

func (k *kvLeases) failed() {
	if k.errors != nil {
		k.errors()
	}
}
