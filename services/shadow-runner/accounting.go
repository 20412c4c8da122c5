package runner

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// The runner's share of the loss accounting (pkg/live, Ledger): per
// launch, the envelopes it replayed (pair stored, envelope acked), skipped
// by reason (acked without replay) and dead-lettered by reason, each
// counted once its ack (or dead letter) is confirmed, so a delivery
// repeated after a lost ack or a crash is counted by the runner that
// finally settles it. The counts are written to the KV bucket
// darklaunch_accounting every accountingInterval, and once more at
// shutdown when every delivery is settled.

// accountingInterval is how often the runner writes its counts.
const accountingInterval = 2 * time.Second

// finalAccountingWait bounds how long the final write waits for the
// deliveries in hand to be settled.
const finalAccountingWait = 10 * time.Second

// ackReplayed acks an envelope whose pair is stored and counts it.
func (s *Service) ackReplayed(ctx context.Context, msg *stage.Msg, launchID string) {
	if msg.Ack(ctx) == nil {
		s.ledger.Replayed(launchID, 1)
	}
}

// ackSkipped acks an envelope not replayed for reason and counts it.
func (s *Service) ackSkipped(ctx context.Context, msg *stage.Msg, launchID, reason string) {
	if msg.Ack(ctx) == nil {
		s.ledger.Skipped(launchID, reason, 1)
	}
}

// countDeadLetter is the stage's OnDeadLetter: every dead letter of an
// envelope, whatever its reason, counted under the launch of its subject
// (a message that does not decode has no other).
func (s *Service) countDeadLetter(m *stage.Msg, reason string) {
	if id, ok := strings.CutPrefix(m.Subject(), stream.EnvelopesPrefix); ok {
		s.ledger.DeadLettered(id, reason, 1)
	}
}

// accountingLoop writes the counts every accountingInterval until ctx
// ends, then once more when the stage has settled every delivery (or gave
// up on them: a killed stage writes nothing more).
func (s *Service) accountingLoop(ctx context.Context) {
	retry.Every(ctx, accountingInterval, func() { s.writeAccounting(ctx) })
	deadline := time.Now().Add(finalAccountingWait)
	for s.st.Stats().InFlight > 0 && time.Now().Before(deadline) {
		if nc := s.st.Conn(); nc == nil || nc.IsClosed() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	s.writeAccounting(fctx)
}

func (s *Service) writeAccounting(ctx context.Context) {
	wctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if _, err := s.ledger.Flush(wctx, s.js); err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		s.log.Warn("loss accounting not written; the reports count this runner late", "err", err)
	}
}
