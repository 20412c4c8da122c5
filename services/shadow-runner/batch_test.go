package runner

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
)

// An envelope batch becomes one pair batch: every envelope replayed, the
// pairs framed with their bodies raw, the batch's Nats-Msg-Id the BatchID
// of the envelope ids, the envelope batch acked once. An envelope of an
// unknown launch in it is dead-lettered alone (a one-item batch holding
// that envelope), the others go on.
func TestEnvelopeBatchMakesOnePairBatch(t *testing.T) {
	h := newHarness(t)
	sh, l, r := h.startWithShadow("runner-batch")
	var envs []*envelope.Envelope
	for i := range 5 {
		envs = append(envs, newEnvelope(l.ID, "POST", fmt.Sprintf("/b/%d", i), "", []byte(fmt.Sprintf(`{"n":%d,"raw":"\u00e9"}`, i))))
	}
	stray := newEnvelope("no-such-launch", "GET", "/stray", "", nil)
	h.publishBatch(stream.EnvelopeSubject(l.ID), append(envs[:2:2], append([]*envelope.Envelope{stray}, envs[2:]...)...)...)

	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	h.waitStreamMsgs(stream.PairsStream, 1)
	pairs := h.pairs() // checks the subject and the BatchID
	if len(pairs) != len(envs) {
		t.Fatalf("%d pairs, want %d", len(pairs), len(envs))
	}
	for i, p := range pairs {
		if p.Envelope.ID != envs[i].ID || !bytes.Equal(p.Envelope.Request.Body, envs[i].Request.Body) ||
			p.Shadow.Status != http.StatusOK || string(p.Shadow.Body) != "shadow" {
			t.Errorf("pair %d: envelope %s body %q, shadow %d %q", i, p.Envelope.ID, p.Envelope.Request.Body, p.Shadow.Status, p.Shadow.Body)
		}
	}
	if got := len(sh.requests()); got != len(envs) {
		t.Errorf("shadow got %d replays, want %d", got, len(envs))
	}
	testenv.WaitStreamMsgs(t, h.js, stream.DeadLetterStream, 1)
	dl := h.rawMsgs(stream.DeadLetterStream)[0]
	got, bad, err := envelope.DecodeEnvelopeBatch(dl.Data)
	if err != nil || len(bad) != 0 || len(got) != 1 || got[0].ID != stray.ID {
		t.Errorf("dead letter %q: %v %v %v; want the stray envelope alone", dl.Data, got, bad, err)
	}
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		st := r.Stats()
		if st.Received != 1 || st.PairsPublished != 5 || st.Replayed != 5 || st.DeadLettered != 1 || st.InFlight != 0 || st.Naks != 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	testenv.WantMetrics(t, r.AdminAddr(), `darklaunch_shadow_runner_dead_lettered_total{reason="unknown_launch"} 1`,
		"darklaunch_shadow_runner_acks_total 1")
}

// The same envelopes delivered twice (a redelivery after a lost ack, or a
// tap's retry outside the envelopes' duplicate window) make the same pair
// batch id, so the pairs stream stores their pairs once.
func TestRepeatedBatchStoredOnce(t *testing.T) {
	h := newHarness(t)
	_, l, r := h.startWithShadow("runner-repeat")
	envs := []*envelope.Envelope{newEnvelope(l.ID, "GET", "/x", "", nil), newEnvelope(l.ID, "GET", "/y", "", nil)}
	data, err := envelope.AppendEnvelopeBatch(nil, envs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		m := batchMsg(stream.EnvelopeSubject(l.ID), data)
		m.Header.Set("Nats-Msg-Id", fmt.Sprintf("tap-retry-%d", i))
		if _, err := h.js.PublishMsg(h.ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := r.Stats(); st.Received != 2 || st.InFlight != 0 || st.Replayed != 4 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	h.waitStreamMsgs(stream.EnvelopesStream, 0)
	if n, _ := h.streamMsgs(stream.PairsStream); n != 1 || len(h.pairs()) != 2 {
		t.Errorf("%d pair messages, %d pairs; want the batch once", n, len(h.pairs()))
	}
}

func batchMsg(subject string, data []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(envelope.BatchHeader, envelope.BatchVersion)
	m.Data = data
	return m
}
