package stage

import (
	"context"
	"github.com/darklaunch/darklaunch/pkg/config"
	"log/slog"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeMsg records how a delivery was settled.
type fakeMsg struct {
	jetstream.Msg
	acks, naks int
	delay      time.Duration
	// ackErr fails the acks while set.
	ackErr error
}

func (f *fakeMsg) Ack() error {
	if f.ackErr != nil {
		return f.ackErr
	}
	f.acks++
	return nil
}
func (f *fakeMsg) DoubleAck(context.Context) error    { f.acks++; return nil }
func (f *fakeMsg) Nak() error                         { f.naks++; return nil }
func (f *fakeMsg) NakWithDelay(d time.Duration) error { f.naks++; f.delay = d; return nil }
func (f *fakeMsg) Data() []byte                       { return []byte("x") }
func (f *fakeMsg) Subject() string                    { return "s" }
func (f *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: 3}, nil
}

func bareStage(t *testing.T) *Stage {
	cfg := Config{Name: "t", NATS: config.NATS{NATSURL: "nats://x"}, Stream: "S", Consumer: jetstream.ConsumerConfig{Durable: "d", MaxDeliver: 5},
		Backoff: retry.Backoff{Max: 5 * time.Second}}
	if err := cfg.fill(); err != nil {
		t.Fatal(err)
	}
	s := &Stage{cfg: cfg, log: slog.New(slog.DiscardHandler), held: newHeld(), unsent: newHeld()}
	s.m = newMetrics(prometheus.NewRegistry(), &s.cfg)
	return s
}

// A delivery is settled once: a second settle does nothing, and the
// counters and the held set follow the first.
func TestMsgSettlesOnce(t *testing.T) {
	s := bareStage(t)
	raw := &fakeMsg{}
	m := s.receive(raw)
	if m.Delivered() != 3 || len(s.held.all()) != 1 || s.Stats().InFlight != 1 || s.Stats().Redelivered != 1 {
		t.Fatalf("after receive: delivered %d, held %d, stats %+v", m.Delivered(), len(s.held.all()), s.Stats())
	}
	m.Ack()
	m.Nak(0)
	m.Ack()
	st := s.Stats()
	if raw.acks != 1 || raw.naks != 0 || st.Acks != 1 || st.Naks != 0 || st.InFlight != 0 || len(s.held.all()) != 0 {
		t.Errorf("acks %d naks %d, stats %+v", raw.acks, raw.naks, st)
	}
}

// An ack that cannot be sent (NATS down, its reconnect buffer full) is
// held, not dropped, and sent by the next retry once NATS is back.
func TestAckHeldUntilSent(t *testing.T) {
	s := bareStage(t)
	raw := &fakeMsg{ackErr: nats.ErrReconnectBufExceeded}
	s.receive(raw).Ack()
	if st := s.Stats(); raw.acks != 0 || st.AckFailures != 1 || st.InFlight != 0 || s.unsent.len() != 1 {
		t.Fatalf("failed ack: acks %d, stats %+v, unsent %d", raw.acks, st, s.unsent.len())
	}
	if n := s.retryAcks(); n != 1 {
		t.Fatalf("retry while NATS is still down: %d held, want 1", n)
	}
	raw.ackErr = nil
	if n := s.retryAcks(); n != 0 || raw.acks != 1 || s.Stats().Acks != 1 {
		t.Fatalf("retry after the reconnect: %d held, %d acks, stats %+v", n, raw.acks, s.Stats())
	}
}

// Retry hands a delivery back with a delay growing with its deliveries.
func TestRetryDelays(t *testing.T) {
	s := bareStage(t)
	raw := &fakeMsg{}
	s.receive(raw).Retry(context.Background(), nil)
	if raw.naks != 1 || raw.delay != 4*time.Second {
		t.Errorf("third delivery retried with %d naks, delay %s; want 1, 4s", raw.naks, raw.delay)
	}
	for n, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 4: 5 * time.Second, 60: 5 * time.Second} {
		if got := s.RedeliveryDelay(n); got != want {
			t.Errorf("RedeliveryDelay(%d) = %s, want %s", n, got, want)
		}
	}
}
