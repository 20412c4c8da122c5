package live

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/stream"
)

// Bucket is the KV bucket holding the taps' snapshots.
const Bucket = "darklaunch_live"

// MaxAge is how long a snapshot stays in the bucket after its tap last
// wrote it: a tap that died (or stopped routing the launch) drops out of
// Read within MaxAge.
const MaxAge = 60 * time.Second

// OpenBucket creates the bucket or updates its settings (replicas:
// stream.Replicas(js)), and returns it. It keeps only the latest snapshot
// of each key.
func OpenBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	return stream.OpenKV(ctx, js, Bucket, "darklaunch live observations, one key per launch and tap: <launch_id>.<tap_id>", MaxAge)
}

// Key is the key of a tap's snapshot of a launch: "<launch_id>.<tap_id>",
// with every character of the tap id that is not a letter, digit, '-', '_'
// or '=' replaced by '_' (so the key has exactly two tokens). Two tap ids
// that differ only in such characters share a key; the snapshot keeps the
// tap id as given.
func Key(launchID, tapID string) string {
	return launchID + "." + sanitize(tapID)
}

func sanitize(id string) string {
	if id == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if keyChar(r) {
			return r
		}
		return '_'
	}, id)
}

func keyChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '='
}

func validLaunchID(id string) bool {
	return id != "" && !strings.ContainsFunc(id, func(r rune) bool { return !keyChar(r) })
}

// Publish writes s under Key(s.LaunchID, s.TapID), replacing the tap's
// previous snapshot of the launch. Errors about s wrap ErrInvalid.
func Publish(ctx context.Context, kv jetstream.KeyValue, s Snapshot) error {
	data, err := Encode(s)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, Key(s.LaunchID, s.TapID), data); err != nil {
		return fmt.Errorf("publish live snapshot of %s: %w", s.LaunchID, err)
	}
	return nil
}

// Read returns the snapshots of every tap that wrote one for the launch
// within MaxAge, sorted by tap id. Snapshots of any live step are returned:
// Aggregate picks those of the current one. Entries that do not decode
// (another Version, say) are left out and reported in an error wrapping
// ErrMalformed, returned together with the snapshots that did decode;
// any other error means nothing could be read.
func Read(ctx context.Context, kv jetstream.KeyValue, launchID string) ([]Snapshot, error) {
	if !validLaunchID(launchID) {
		return nil, fmt.Errorf("%w: launch id %q cannot be part of a key", ErrInvalid, launchID)
	}
	var out []Snapshot
	bad, err := watchLaunch(ctx, kv, launchID, func(key string, value []byte) error {
		s, err := Decode(value)
		if err == nil && s.LaunchID != launchID {
			err = fmt.Errorf("%w: launch id %q under the key of %q", ErrMalformed, s.LaunchID, launchID)
		}
		if err == nil {
			out = append(out, s)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read live snapshots of %s: %w", launchID, err)
	}
	slices.SortFunc(out, func(a, b Snapshot) int { return strings.Compare(a.TapID, b.TapID) })
	return out, bad
}

// watchLaunch calls each with the latest value of every key of the launch
// ("<launch_id>.*", deletes left out). The errors each returns are joined
// into bad, each prefixed with its key; err means nothing could be read.
func watchLaunch(ctx context.Context, kv jetstream.KeyValue, launchID string, each func(key string, value []byte) error) (bad, err error) {
	// A watch delivers the latest value of every matching key, then nil:
	// one consumer for all the processes instead of a key listing and a
	// Get per key.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.Watch(ctx, launchID+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	var errs []error
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("watch closed")
			}
			if e == nil {
				return errors.Join(errs...), nil
			}
			if err := each(e.Key(), e.Value()); err != nil {
				errs = append(errs, fmt.Errorf("key %s: %w", e.Key(), err))
			}
		}
	}
}
