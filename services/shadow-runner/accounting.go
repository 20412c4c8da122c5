package runner

import (
	"context"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// The runner's share of the loss accounting (pkg/live, Ledger): per
// launch, the envelopes it replayed (pair stored, envelope acked), skipped
// by reason (acked without replay) and dead-lettered by reason, each
// counted once its ack (or dead letter) is confirmed, so a delivery
// repeated after a lost ack or a crash is counted by the runner that
// finally settles it. The counts are written to the KV bucket
// darklaunch_accounting every live.ReportInterval, and once more at
// shutdown when every delivery is settled.

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

// countDeadLetter is the stage's OnDeadLetter: every dead letter of
// envelopes, whatever its reason, counted under the launch of its subject
// (a message that does not decode has no other), a batch for its items.
func (s *Service) countDeadLetter(m *stage.Msg, reason string, data []byte) {
	if id, ok := strings.CutPrefix(m.Subject(), stream.EnvelopesPrefix); ok {
		s.ledger.DeadLettered(id, reason, live.ItemsIn(data))
	}
}

// reportAccounting writes the counts until ctx ends, and once more when
// the stage has settled every delivery (a killed stage, its connection
// closed, writes nothing more).
func (s *Service) reportAccounting(ctx context.Context) {
	s.ledger.Report(ctx, s.js, live.ReportInterval, func() bool {
		nc := s.st.Conn()
		return s.st.Stats().InFlight == 0 || nc == nil || nc.IsClosed()
	}, s.log)
}
