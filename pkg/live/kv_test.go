package live

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// Against an embedded JetStream: the bucket's settings, keys per launch
// and tap, replacement of a tap's snapshot, other launches kept apart, and
// an undecodable entry reported without hiding the good ones.
func TestPublishAndRead(t *testing.T) {
	ctx, js := testenv.Context(t), startJetStream(t)
	kv, err := OpenBucket(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != MaxAge || st.History() != 1 || st.Bucket() != Bucket {
		t.Errorf("bucket %s: TTL %v, history %d", st.Bucket(), st.TTL(), st.History())
	}
	if _, err := OpenBucket(ctx, js); err != nil {
		t.Errorf("opening the bucket again: %v", err)
	}

	const a, b = "0195aaaa-0000-7000-8000-000000000001", "0195aaaa-0000-7000-8000-000000000002"
	if got, err := Read(ctx, kv, a); err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v, %v", got, err)
	}

	since := time.Now().UTC()
	snap := func(launch, tap string, requests uint64) Snapshot {
		return Snapshot{LaunchID: launch, TapID: tap, Since: since, At: since.Add(time.Second), LivePercent: 50,
			New: Side{Requests: requests, Errors: 1, LatencyBuckets: make([]uint64, NumBuckets)}}
	}
	for _, s := range []Snapshot{snap(a, "tap-2", 1), snap(a, "tap.1", 5), snap(b, "tap-2", 7), snap(a, "tap-2", 9)} {
		if err := Publish(ctx, kv, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Read(ctx, kv, a)
	if err != nil {
		t.Fatal(err)
	}
	var taps []string
	for _, s := range got {
		taps = append(taps, s.TapID)
		if s.LaunchID != a || s.V != Version || !s.Since.Equal(since) || len(s.Primary.LatencyBuckets) != NumBuckets {
			t.Errorf("read %+v", s)
		}
	}
	if !slices.Equal(taps, []string{"tap-2", "tap.1"}) || got[0].New.Requests != 9 || got[1].New.Requests != 5 {
		t.Errorf("launch a: %+v", got)
	}
	if e, err := kv.Get(ctx, a+".tap_1"); err != nil || e.Revision() == 0 {
		t.Errorf("key of tap.1: %v", err)
	}
	if got, err := Read(ctx, kv, b); err != nil || len(got) != 1 || got[0].New.Requests != 7 {
		t.Errorf("launch b: %+v, %v", got, err)
	}

	// A stray entry (another version) does not hide the good ones.
	if _, err := kv.Put(ctx, a+".future", []byte(`{"v":2,"launch_id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(ctx, kv, a); !errors.Is(err, ErrMalformed) || len(got) != 2 {
		t.Errorf("with a stray entry: %d snapshots, %v", len(got), err)
	}
	// Deleted keys are not read.
	if err := kv.Delete(ctx, a+".future"); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(ctx, kv, a); err != nil || len(got) != 2 {
		t.Errorf("after a delete: %d snapshots, %v", len(got), err)
	}

	if _, err := Read(ctx, kv, "a.*"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Read with a wildcard launch id: %v", err)
	}
	if err := Publish(ctx, kv, snap("", "t", 1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Publish without a launch id: %v", err)
	}
}

// Read reads many taps' snapshots, more than the watch's buffer holds.
func TestReadManyTaps(t *testing.T) {
	ctx, js := testenv.Context(t), startJetStream(t)
	kv, err := OpenBucket(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	const id, n = "launch-1", 600
	since := time.Now()
	for i := range n {
		s := Snapshot{LaunchID: id, TapID: "tap-" + string(rune('a'+i%26)) + "-" + time.Duration(i).String(), Since: since, At: since,
			New: Side{Requests: 1}}
		if err := Publish(ctx, kv, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Read(ctx, kv, id)
	if err != nil {
		t.Fatal(err)
	}
	if tot := Aggregate(got, since); len(got) != n || tot.Taps != n || tot.New.Requests != n {
		t.Errorf("%d snapshots, totals %+v", len(got), tot)
	}
}

// startJetStream starts an embedded JetStream server for the test and
// connects to it.
func startJetStream(t *testing.T) jetstream.JetStream {
	_, js := testenv.Connect(t, testenv.StartJetStream(t).URL())
	return js
}
