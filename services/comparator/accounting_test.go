package comparator

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// The comparator counts the pairs it dead-letters per launch (whole
// messages and items of a batch), in the accounting bucket while it runs
// and once more at shutdown.
func TestAccountingDeadLetters(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	const launchA, launchB = "l-acct-a", "l-acct-b"
	h.publish(newPair(launchA, envelope.NewID(), "/x", 200, "", 200, ""), "")
	h.publishRaw(stream.PairSubject(launchA), []byte("not json"))
	h.publishRaw(stream.PairSubject(launchA), []byte("{}"))
	h.publishRaw(stream.PairSubject(launchB), []byte("[1]"))
	// A batch with a pair of another version: dead-lettered alone.
	future := newPair(launchB, envelope.NewID(), "/z", 200, "", 200, "")
	future.V = envelope.Version + 1
	h.publishBatch(newPair(launchB, envelope.NewID(), "/y", 200, "", 200, ""), future)
	r := h.start(h.config())
	h.waitRows(launchA, 1)
	h.waitRows(launchB, 1)

	kv, err := live.OpenAccountingBucket(h.ctx, h.js)
	if err != nil {
		t.Fatal(err)
	}
	deadLettered := func(id string) (uint64, error) {
		cs, err := live.ReadCounts(h.ctx, kv, id)
		if err != nil {
			return 0, err
		}
		sum := live.SumCounts(cs)
		if sum.Comparators != len(cs) || sum.Replayed+sum.Sampled != 0 {
			return 0, fmt.Errorf("counts %+v", cs)
		}
		return sum.DeadLettered[reasonMalformed], nil
	}
	testenv.CheckFor(t, 3*live.ReportInterval+5*time.Second, 50*time.Millisecond, func() error {
		a, err := deadLettered(launchA)
		b, errB := deadLettered(launchB)
		if err := errors.Join(err, errB); err != nil {
			return err
		}
		if a != 2 || b != 1+1 {
			return fmt.Errorf("dead-lettered: a %d, b %d", a, b)
		}
		return nil
	})
	// One more after the last periodic write: written at shutdown.
	h.publishRaw(stream.PairSubject(launchB), []byte("nope"))
	r.waitStats(t, "5 dead-lettered", func(st Stats) bool { return st.DeadLettered == 5 })
	r.stop(t)
	if b, err := deadLettered(launchB); err != nil || b != 3 {
		t.Errorf("after shutdown: %d, %v", b, err)
	}
}
