package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/stream"
)

// Bucket is the NATS KV bucket holding one key per launch, the key being the
// launch id and the value the Launch as JSON.
const Bucket = "darklaunch_launches"

// OpenBucket creates the launches bucket if needed, or brings its settings
// (replicas: stream.Replicas(js)) in line, and returns it.
func OpenBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "darklaunch launches, one key per launch id",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    stream.Replicas(js),
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// Store reads and writes launches in the KV bucket.
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewStore returns a store over an opened bucket.
func NewStore(kv jetstream.KeyValue) *Store { return &Store{kv: kv, now: time.Now} }

// Create validates l, gives it an id and timestamps, and stores it active.
func (s *Store) Create(ctx context.Context, l Launch) (*Launch, error) {
	if err := l.Normalize(); err != nil {
		return nil, err
	}
	l.ID = uuid.Must(uuid.NewV7()).String()
	l.Status = StatusActive
	l.CreatedAt = s.now().UTC()
	l.UpdatedAt = l.CreatedAt
	data, err := encode(&l)
	if err != nil {
		return nil, err
	}
	rev, err := s.kv.Create(ctx, l.ID, data)
	if err != nil {
		return nil, storeError("store", l.ID, len(data), err)
	}
	l.Revision = rev
	return &l, nil
}

// Get returns the launch with this id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*Launch, error) {
	if !validKey(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read launch %s: %w", id, err)
	}
	return decode(e)
}

// List returns every launch, newest first.
func (s *Store) List(ctx context.Context) ([]*Launch, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list launches: %w", err)
	}
	defer lister.Stop()
	var out []*Launch
	for key := range lister.Keys() {
		l, err := s.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue // deleted between listing and reading
		}
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b *Launch) int { return strings.Compare(b.ID, a.ID) })
	return out, nil
}

// Update reads the launch, applies change and writes it back if nobody wrote
// in between; on a concurrent write it retries with the fresh value. change
// returns an error to abort (it is returned as is).
func (s *Store) Update(ctx context.Context, id string, change func(*Launch) error) (*Launch, error) {
	for attempt := 0; ; attempt++ {
		l, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(l); err != nil {
			return nil, err
		}
		l.UpdatedAt = s.now().UTC()
		data, err := encode(l)
		if err != nil {
			return nil, err
		}
		rev, err := s.kv.Update(ctx, id, data, l.Revision)
		if err == nil {
			l.Revision = rev
			return l, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) || attempt >= 20 {
			return nil, storeError("update", id, len(data), err)
		}
		// Someone else wrote first: re-read and re-apply.
	}
}

// encode is the launch as stored, refused (ErrInvalid) when over
// MaxEncodedBytes.
func encode(l *Launch) ([]byte, error) {
	data, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	return data, checkEncoded(l.ID, data)
}

// storeError wraps a failed write of a launch of size bytes. A launch
// over the NATS server's max payload (set lower than MaxEncodedBytes) is
// the caller's: ErrInvalid, not an outage.
func storeError(op, id string, size int, err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: launch %s is %d bytes as stored JSON, more than the NATS server accepts in one message: shorten its rules, patterns or names",
			ErrInvalid, id, size)
	}
	return fmt.Errorf("%s launch %s: %w", op, id, err)
}

func decode(e jetstream.KeyValueEntry) (*Launch, error) {
	var l Launch
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return nil, fmt.Errorf("launch %s in KV is not valid JSON: %w", e.Key(), err)
	}
	l.Revision = e.Revision()
	return &l, nil
}

// validKey guards KV lookups against ids that are not valid key names.
func validKey(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Setup creates (or updates) the streams and opens the launches bucket:
// what a pipeline stage needs before it can take work.
func Setup(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	if err := stream.Ensure(ctx, js); err != nil {
		return nil, err
	}
	return OpenBucket(ctx, js)
}
