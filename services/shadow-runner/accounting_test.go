package runner

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// Two runners count per launch what they replayed, skipped and
// dead-lettered; their counts, written to the accounting bucket while they
// run and once more at shutdown, add up to what was sent.
func TestAccountingPerLaunch(t *testing.T) {
	h := newHarness(t)
	sh := newShadow(t, nil)
	l := h.createLaunch(sh.URL)
	rolled := h.createLaunch(sh.URL)
	h.setStatus(rolled.ID, launch.StatusRolledBack)
	r1, r2 := h.runReady(h.testConfig("runner-1")), h.runReady(h.testConfig("runner-2"))

	for i := range 6 {
		h.publishEnvelope(newEnvelope(l.ID, "GET", fmt.Sprintf("/ok/%d", i), "", nil))
	}
	h.publishRaw(stream.EnvelopeSubject(l.ID), []byte("this is not json"), "")
	unknown := newEnvelope(envelope.NewID(), "GET", "/", "", nil)
	h.publishEnvelope(unknown)
	for range 2 {
		h.publishEnvelope(newEnvelope(rolled.ID, "GET", "/rolled", "", nil))
	}
	// Batches: three envelopes replayed; two replayed and one of another
	// version dead-lettered alone; a batch whose framing is broken,
	// dead-lettered whole for the two items it claims.
	h.publishBatch(stream.EnvelopeSubject(l.ID), newEnvelope(l.ID, "GET", "/b/1", "", nil),
		newEnvelope(l.ID, "GET", "/b/2", "", nil), newEnvelope(l.ID, "GET", "/b/3", "", nil))
	future := newEnvelope(l.ID, "GET", "/future", "", nil)
	future.V = envelope.Version + 1
	h.publishBatch(stream.EnvelopeSubject(l.ID), newEnvelope(l.ID, "GET", "/b/4", "", nil), future, newEnvelope(l.ID, "GET", "/b/5", "", nil))
	broken := nats.NewMsg(stream.EnvelopeSubject(l.ID))
	broken.Header.Set(envelope.BatchHeader, envelope.BatchVersion)
	broken.Data = []byte("DLB\x01\x02xx")
	if _, err := h.js.PublishMsg(h.ctx, broken); err != nil {
		t.Fatal(err)
	}
	h.waitStreamMsgs(stream.EnvelopesStream, 0)

	kv, err := live.OpenAccountingBucket(h.ctx, h.js)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(id string) live.CountTotals {
		t.Helper()
		cs, err := live.ReadCounts(h.ctx, kv, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Role != live.RoleRunner || (c.Process != r1.ledger.Process() && c.Process != r2.ledger.Process()) {
				t.Errorf("counts of %s by %s (%s)", id, c.Process, c.Role)
			}
		}
		return live.SumCounts(cs)
	}
	check := func() error {
		if got := sum(l.ID); got.Replayed != 6+3+2 || !maps.Equal(got.DeadLettered, map[string]uint64{reasonMalformed: 1 + 1 + 2}) || len(got.Skipped) != 0 {
			return fmt.Errorf("launch: %+v", got)
		}
		if got := sum(unknown.LaunchID); got.Replayed != 0 || !maps.Equal(got.DeadLettered, map[string]uint64{reasonUnknownLaunch: 1}) {
			return fmt.Errorf("unknown launch: %+v", got)
		}
		if got := sum(rolled.ID); got.Replayed != 0 || !maps.Equal(got.Skipped, map[string]uint64{skipRolledBack: 1 + 1}) {
			return fmt.Errorf("rolled back launch: %+v", got)
		}
		return nil
	}
	// Written while running (every accountingInterval).
	testenv.CheckFor(t, 3*live.ReportInterval+5*time.Second, 50*time.Millisecond, check)
	st1, st2 := r1.Stats(), r2.Stats()
	if st1.Replayed+st2.Replayed != 11 || st1.DeadLettered+st2.DeadLettered != 4 || st1.Skipped+st2.Skipped != 2 {
		t.Errorf("runner stats %+v %+v", st1, st2)
	}

	// Counted after the last periodic write: written at shutdown.
	h.publishEnvelope(newEnvelope(l.ID, "GET", "/last", "", nil))
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	for _, r := range []*runner{r1, r2} {
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if got := sum(l.ID); got.Replayed != 12 {
		t.Errorf("after shutdown: %+v", got)
	}
}
