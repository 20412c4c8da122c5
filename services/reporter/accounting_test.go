package reporter

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// A message counts its items only with the batch header (the framing's
// own cases: live.TestItemsIn).
func TestItemsOf(t *testing.T) {
	envs := []*envelope.Envelope{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	batch, err := envelope.AppendEnvelopeBatch(nil, envs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		batch bool
		data  []byte
		want  uint64
	}{
		{"single document", false, []byte(`{"v":1}`), 1},
		{"batch", true, batch, 3},
		{"batch bytes without the header", false, batch, 1},
		{"header on a single document", true, []byte(`{"v":1}`), 1},
	} {
		if got := itemsOf(c.batch, c.data); got != c.want {
			t.Errorf("%s: %d items, want %d", c.name, got, c.want)
		}
	}
}

// in_flight counts a launch's envelopes and pairs in the two work-queue
// streams, a batch message for its items, other launches left out; past
// maxScanMsgs messages, the rest is estimated.
func TestInFlight(t *testing.T) {
	ctx := testenv.Context(t)
	_, js := testenv.Connect(t, testenv.StartJetStream(t).URL())
	const launch, other = "l-1", "l-2"
	if n, est, err := inFlight(ctx, js, launch); err != nil || n != 0 || est {
		t.Fatalf("without streams: %d %v %v", n, est, err)
	}
	if err := stream.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	publish := func(subject string, data []byte, batch bool) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = data
		if batch {
			m.Header.Set(envelope.BatchHeader, envelope.BatchVersion)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	batchOf := func(n int) []byte {
		envs := make([]*envelope.Envelope, n)
		for i := range envs {
			envs[i] = &envelope.Envelope{ID: envelope.NewID(), LaunchID: launch}
		}
		b, err := envelope.AppendEnvelopeBatch(nil, envs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	publish(stream.EnvelopeSubject(launch), []byte(`{"v":1}`), false)
	publish(stream.EnvelopeSubject(other), []byte(`{"v":1}`), false)
	publish(stream.EnvelopeSubject(launch), batchOf(5), true)
	publish(stream.PairSubject(launch), []byte(`{"v":1}`), false)
	publish(stream.PairSubject(launch), []byte(`{"v":1}`), false)
	publish(stream.PairSubject(other), batchOf(7), true)
	if n, est, err := inFlight(ctx, js, launch); err != nil || n != 1+5+2 || est {
		t.Errorf("launch: %d %v %v", n, est, err)
	}
	if n, est, err := inFlight(ctx, js, other); err != nil || n != 1+7 || est {
		t.Errorf("other launch: %d %v %v", n, est, err)
	}
	// More messages than are read: the rest at the items per message read.
	for range maxScanMsgs {
		publish(stream.EnvelopeSubject(other), batchOf(2), true)
	}
	// The pairs: 7 (one batch); the envelopes: the first maxScanMsgs
	// messages read (one single and batches of 2), the last one estimated
	// at their items per message (integer division: 1).
	read := uint64(1 + 2*(maxScanMsgs-1))
	if n, est, err := inFlight(ctx, js, other); err != nil || !est || n != 7+read+read/maxScanMsgs {
		t.Errorf("many messages: %d %v %v", n, est, err)
	}
}
