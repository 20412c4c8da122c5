package runner

import (
	"context"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// The runner's share of the loss accounting (pkg/live, Ledger): per
// launch, the envelopes it replayed (their pairs stored), skipped by
// reason (not replayed) and dead-lettered by reason. What becomes of a
// delivery's envelopes is tallied while it is handled and counted only
// when Handle acks it: a delivery handed back (Retry) is handled again,
// maybe by another runner, and counting it twice would make envelopes
// appear from nowhere. A delivery dead-lettered whole is counted by the
// stage's OnDeadLetter, a batch for its items. The counts are written to
// the KV bucket darklaunch_accounting every live.ReportInterval, and once
// more at shutdown when every delivery is settled.

// What a tally counts.
const (
	countReplayed = iota
	countSkipped
	countDeadLettered
)

// tally is what a delivery's envelopes became so far.
type tally []tallied

type tallied struct {
	launch, reason string
	what           int
	n              uint64
}

func (t *tally) add(launchID string, what int, reason string, n uint64) {
	*t = append(*t, tallied{launchID, reason, what, n})
}

// account counts an acked delivery's tally.
func (s *Service) account(t *tally) {
	for _, e := range *t {
		switch e.what {
		case countReplayed:
			s.ledger.Replayed(e.launch, e.n)
		case countSkipped:
			s.ledger.Skipped(e.launch, e.reason, e.n)
		case countDeadLettered:
			s.ledger.DeadLettered(e.launch, e.reason, e.n)
		}
	}
}

// launchOf is the launch id of an envelope or pair subject.
func launchOf(subject, prefix string) string {
	id, _ := strings.CutPrefix(subject, prefix)
	return id
}

// countDeadLetter is the stage's OnDeadLetter: a delivery of envelopes
// dead-lettered whole, whatever its reason, counted under the launch of
// its subject (a message that does not decode has no other), a batch for
// its items.
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
