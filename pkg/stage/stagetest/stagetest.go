// Package stagetest is the conformance suite every pipeline stage built on
// package stage must pass, run from each stage's own tests with its real
// handler and real servers (Watermill's pubsub test suite is the model):
//
//	func TestConformance(t *testing.T) { stagetest.Run(t, setup) }
//
// It checks the runtime's promises end to end, through the stage's own
// processing: a delivery held by a process that is killed is processed by
// another; a delivery held longer than its ack deadline is kept alive,
// not redelivered; an undecodable message is dead-lettered with its
// reason, and so is the one bad item of a batch, alone, the rest of the
// batch processed; a shutdown loses nothing it held and acks nothing it
// did not process; a deleted consumer is created again.
package stagetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Instance is one process of the stage under test, built but not running.
type Instance interface {
	Run(ctx context.Context) error
	// Stage is the runtime the instance runs in.
	Stage() *stage.Stage
}

// Options shape an instance for one check.
type Options struct {
	// AckWait replaces the consumer's ack deadline (0: the stage's own).
	AckWait time.Duration
	// Stall makes the instance hold what it receives for a few seconds
	// before finishing it (a slow shadow, a batch that is not yet due).
	Stall bool
	// Panic makes the instance's handler panic on the messages
	// Fixture.PublishPanic publishes (and only on those).
	Panic bool
}

// Fixture is the stage under test in one check, against a fresh NATS
// server.
type Fixture struct {
	// Name, Stream and Consumer: the stage's name (its dead-letter
	// subject), the stream it reads and its durable consumer.
	Name, Stream, Consumer string
	// New builds a new instance (a new process) of the stage.
	New func(Options) Instance
	// Publish publishes one valid message (preparing what it needs, such
	// as its launch) and returns its id (its Nats-Msg-Id).
	Publish func() string
	// Processed reports whether the message with this id has been
	// processed: its output is stored.
	Processed func(id string) bool
	// PublishPanic publishes one message that an instance built with
	// Options.Panic panics on, and returns its id.
	PublishPanic func() string
	// Undecodable is published on Subject; its dead letter's reason must
	// contain Reason.
	Subject     string
	Undecodable []byte
	Reason      string
	// PublishBatch publishes one batch message of good valid items with,
	// before the item at index bad, one item the stage cannot decode, and
	// returns the ids of the valid items. The bad item's dead letter's
	// reason must contain ItemReason.
	PublishBatch func(good, bad int) []string
	ItemReason   string
}

// Setup prepares one check: natsURL is a fresh JetStream server, js a
// connection to it.
type Setup func(t *testing.T, natsURL string, js jetstream.JetStream) Fixture

const (
	wait    = 30 * time.Second
	poll    = 20 * time.Millisecond
	ackWait = 2 * time.Second
)

// Run runs every check of the suite as a subtest.
func Run(t *testing.T, setup Setup) {
	for _, c := range []struct {
		name string
		f    func(*testing.T, *env)
	}{
		{"RedeliveryAfterCrash", redeliveryAfterCrash},
		{"KeepAliveBeyondAckWait", keepAliveBeyondAckWait},
		{"BatchBadItemDeadLettered", batchBadItem},
		{"DeadLetterUndecodable", deadLetterUndecodable},
		{"DrainOnShutdown", drainOnShutdown},
		{"DeletedConsumerRecreated", deletedConsumerRecreated},
		{"PanicDeadLettered", panicDeadLettered},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := testenv.StartJetStream(t)
			_, js := testenv.Connect(t, ns.URL())
			e := &env{t: t, ctx: testenv.Context(t), js: js}
			e.fx = setup(t, ns.URL(), js)
			c.f(t, e)
		})
	}
}

type env struct {
	t   *testing.T
	ctx context.Context
	js  jetstream.JetStream
	fx  Fixture
}

type running struct {
	Instance
	*testenv.Running
}

func (e *env) start(o Options) running {
	e.t.Helper()
	in := e.fx.New(o)
	r := running{in, testenv.Run(e.t, in.Run)}
	select {
	case <-in.Stage().Ready():
	case <-time.After(wait):
		e.t.Fatalf("stage %s not ready within %s", e.fx.Name, wait)
	}
	return r
}

func (e *env) waitProcessed(ids ...string) {
	e.t.Helper()
	testenv.CheckFor(e.t, wait, poll, func() error {
		for _, id := range ids {
			if !e.fx.Processed(id) {
				return fmt.Errorf("message %s not processed", id)
			}
		}
		return nil
	})
}

// inStream reports which of ids the stream still holds (unacked).
func (e *env) inStream(ids []string) map[string]bool {
	e.t.Helper()
	s, err := e.js.Stream(e.ctx, e.fx.Stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]bool{}
	if info.State.Msgs == 0 {
		return out
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(e.ctx, seq)
		if err != nil {
			continue // acked (removed) in between
		}
		out[m.Header.Get(nats.MsgIdHdr)] = true
	}
	return out
}

// redeliveryAfterCrash: a process killed while holding a delivery, without
// acking it, leaves it to the ack deadline, and another process then
// processes it.
func redeliveryAfterCrash(t *testing.T, e *env) {
	a := e.start(Options{AckWait: ackWait, Stall: true})
	id := e.fx.Publish()
	testenv.CheckFor(t, wait, poll, func() error {
		if st := a.Stage().Stats(); st.Received < 1 || st.InFlight < 1 {
			return fmt.Errorf("first instance holds nothing yet: %+v", st)
		}
		return nil
	})
	a.Stage().Kill()
	if err := a.Stop(); err != nil {
		t.Fatalf("killed instance: %v", err)
	}
	if st := a.Stage().Stats(); st.Acks != 0 || st.DeadLetteredTotal() != 0 {
		t.Fatalf("killed instance settled its delivery: %+v", st)
	}
	b := e.start(Options{AckWait: ackWait})
	e.waitProcessed(id)
	testenv.CheckFor(t, wait, poll, func() error {
		if st := b.Stage().Stats(); st.Redelivered < 1 || st.Acks < 1 {
			return fmt.Errorf("second instance: %+v, want the redelivery acked", st)
		}
		if n, err := testenv.StreamMsgs(e.ctx, e.js, e.fx.Stream); err != nil || n != 0 {
			return fmt.Errorf("%d messages left in %s (%v)", n, e.fx.Stream, err)
		}
		return nil
	})
}

// keepAliveBeyondAckWait: a delivery held for several ack deadlines by a
// live process has its deadline restarted (keep-alives counted), is not
// redelivered, and is processed once, when the process finishes it.
func keepAliveBeyondAckWait(t *testing.T, e *env) {
	// Stall holds a delivery about 2s: over three deadlines of 600ms.
	const short = 600 * time.Millisecond
	a := e.start(Options{AckWait: short, Stall: true})
	id := e.fx.Publish()
	// Three keep-alives (the first when the delivery is half a deadline
	// old, then one every half): held for at least 1.5 deadlines.
	testenv.CheckFor(t, wait, poll, func() error {
		if st := a.Stage().Stats(); st.KeepAlives < 3 {
			return fmt.Errorf("held delivery kept alive %d times, want 3: %+v", st.KeepAlives, st)
		}
		return nil
	})
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	st := a.Stage().Stats()
	if st.Redelivered != 0 || st.Received != 1 {
		t.Errorf("stats %+v: want one delivery, never redelivered", st)
	}
	if !e.fx.Processed(id) {
		// Not processed by the drain: it must still be in the stream.
		if !e.inStream([]string{id})[id] {
			t.Fatalf("message %s neither processed nor in the stream", id)
		}
		e.start(Options{})
		e.waitProcessed(id)
	}
}

// batchBadItem: a batch message with one item the stage cannot decode has
// that item dead-lettered alone, with its reason, and the others
// processed; the batch is acked.
func batchBadItem(t *testing.T, e *env) {
	if e.fx.PublishBatch == nil {
		t.Skip("the stage takes no batches")
	}
	r := e.start(Options{})
	ids := e.fx.PublishBatch(4, 2)
	e.waitProcessed(ids...)
	m := e.deadLetter()
	if !strings.Contains(m.Header.Get(stream.HeaderReason), e.fx.ItemReason) || m.Header.Get(stream.HeaderSubject) == "" {
		t.Errorf("dead letter from %q, reason %q; want the batch's subject and a reason containing %q",
			m.Header.Get(stream.HeaderSubject), m.Header.Get(stream.HeaderReason), e.fx.ItemReason)
	}
	for _, id := range ids {
		if strings.Contains(string(m.Data), id) {
			t.Errorf("the dead letter holds the good item %s: %q", id, m.Data)
		}
	}
	testenv.CheckFor(t, wait, poll, func() error {
		if st := r.Stage().Stats(); st.DeadLetteredTotal() != 1 || st.InFlight != 0 || st.Acks != 1 || st.Received != 1 {
			return fmt.Errorf("stats %+v, want one delivery acked, one item dead-lettered, nothing held", st)
		}
		return nil
	})
}

// deadLetter waits until the stage's stream is empty and its one dead
// letter stored, and returns that dead letter.
func (e *env) deadLetter() *jetstream.RawStreamMsg {
	e.t.Helper()
	testenv.WaitStreamMsgs(e.t, e.js, stream.DeadLetterStream, 1)
	testenv.WaitStreamMsgs(e.t, e.js, e.fx.Stream, 0)
	s, err := e.js.Stream(e.ctx, stream.DeadLetterStream)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(e.ctx, stream.DeadLetterSubject(e.fx.Name))
	if err != nil {
		e.t.Fatalf("no dead letter on %s: %v", stream.DeadLetterSubject(e.fx.Name), err)
	}
	return m
}

// deadLetterUndecodable: a message the stage cannot decode goes to its
// dead-letter subject, unchanged, with the reason and the original
// subject, and is acked.
func deadLetterUndecodable(t *testing.T, e *env) {
	r := e.start(Options{})
	if _, err := e.js.Publish(e.ctx, e.fx.Subject, e.fx.Undecodable); err != nil {
		t.Fatal(err)
	}
	m := e.deadLetter()
	if string(m.Data) != string(e.fx.Undecodable) || m.Header.Get(stream.HeaderSubject) != e.fx.Subject ||
		!strings.Contains(m.Header.Get(stream.HeaderReason), e.fx.Reason) {
		t.Errorf("dead letter %q from %q, reason %q; want the message unchanged from %q with a reason containing %q",
			m.Data, m.Header.Get(stream.HeaderSubject), m.Header.Get(stream.HeaderReason), e.fx.Subject, e.fx.Reason)
	}
	testenv.CheckFor(t, wait, poll, func() error {
		if st := r.Stage().Stats(); st.DeadLetteredTotal() != 1 || st.InFlight != 0 {
			return fmt.Errorf("stats %+v, want one dead letter and nothing held", st)
		}
		return nil
	})
}

// panicDeadLettered: a message the handler panics on is dead-lettered with
// the reason panic, counted, and acked; the messages before and after it
// are processed by the same instance, which keeps running.
func panicDeadLettered(t *testing.T, e *env) {
	r := e.start(Options{Panic: true})
	before := e.fx.Publish()
	poison := e.fx.PublishPanic()
	after := e.fx.Publish()
	e.waitProcessed(before, after)
	m := e.deadLetter()
	if !strings.Contains(m.Header.Get(stream.HeaderReason), "panic") {
		t.Errorf("dead letter reason %q does not name the panic", m.Header.Get(stream.HeaderReason))
	}
	testenv.CheckFor(t, wait, poll, func() error {
		st := r.Stage().Stats()
		if st.Panics != 1 || st.DeadLettered[stage.ReasonPanic] != 1 || st.InFlight != 0 {
			return fmt.Errorf("stats %+v, want one panic dead-lettered and nothing held", st)
		}
		return nil
	})
	if e.fx.Processed(poison) {
		t.Error("the message the handler panicked on was also processed")
	}
	last := e.fx.Publish()
	e.waitProcessed(last)
}

// drainOnShutdown: a shutdown while deliveries are held finishes them:
// nothing acked is left unprocessed, and nothing is lost (what was not
// processed stays in the stream and another process processes it).
func drainOnShutdown(t *testing.T, e *env) {
	a := e.start(Options{Stall: true})
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = e.fx.Publish()
	}
	testenv.CheckFor(t, wait, poll, func() error {
		if st := a.Stage().Stats(); st.InFlight < 1 {
			return fmt.Errorf("nothing held yet: %+v", st)
		}
		return nil
	})
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if st := a.Stage().Stats(); st.InFlight != 0 {
		t.Errorf("%d deliveries still held after shutdown", st.InFlight)
	}
	left := e.inStream(ids)
	processed := 0
	for _, id := range ids {
		switch done := e.fx.Processed(id); {
		case done:
			processed++
		case !left[id]:
			t.Errorf("message %s acked but never processed", id)
		}
	}
	if processed == 0 {
		t.Errorf("shutdown processed none of the deliveries it held")
	}
	e.start(Options{})
	e.waitProcessed(ids...)
}

// deletedConsumerRecreated: a consumer deleted under a running stage is
// created again, and messages keep flowing.
func deletedConsumerRecreated(t *testing.T, e *env) {
	r := e.start(Options{})
	first := e.fx.Publish()
	e.waitProcessed(first)
	if err := e.js.DeleteConsumer(e.ctx, e.fx.Stream, e.fx.Consumer); err != nil {
		t.Fatal(err)
	}
	id := e.fx.Publish()
	e.waitProcessed(id)
	if st := r.Stage().Stats(); st.ConsumerSetups < 2 {
		t.Errorf("consumer set up %d times, want again after the deletion", st.ConsumerSetups)
	}
	if _, err := e.js.Consumer(e.ctx, e.fx.Stream, e.fx.Consumer); err != nil {
		t.Errorf("consumer %s: %v", e.fx.Consumer, err)
	}
}
