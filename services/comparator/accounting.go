package comparator

import (
	"context"
	"os"
	"strconv"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/stage"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// The comparator's share of the loss accounting (pkg/live, Ledger): the
// pairs it dead-lettered, per launch and reason, written to the KV bucket
// darklaunch_accounting every live.ReportInterval and once more at
// shutdown. What it compared is not counted here: the reporter reads it
// from ClickHouse, one row per envelope id, exact however often a pair
// was inserted.

// countDeadLetter is the stage's OnDeadLetter: a delivery of pairs
// dead-lettered whole, whatever its reason, counted under the launch of
// its subject, a batch for its items.
func (s *Service) countDeadLetter(m *stage.Msg, reason string, data []byte) {
	if id, ok := strings.CutPrefix(m.Subject(), stream.PairsPrefix); ok {
		s.ledger.DeadLettered(id, reason, live.ItemsIn(data))
	}
}

// countDeadLetterItem counts one malformed pair of a batch dead-lettered
// alone. It is counted at once: the comparator holds a delivery until its
// batch is stored and never hands it back for an insert, so the item is
// dead-lettered again (and counted twice) only if a later item's dead
// letter fails or the process dies before the ack.
func (s *Service) countDeadLetterItem(msg *stage.Msg) {
	if id, ok := strings.CutPrefix(msg.Subject(), stream.PairsPrefix); ok {
		s.ledger.DeadLettered(id, reasonMalformed, 1)
	}
}

// reportAccounting writes the counts until ctx ends, and once more when
// the stage has settled every delivery (a killed stage writes nothing
// more).
func (s *Service) reportAccounting(ctx context.Context) {
	s.ledger.Report(ctx, s.st.JetStream(), live.ReportInterval, func() bool {
		nc := s.st.Conn()
		return s.st.Stats().InFlight == 0 || nc == nil || nc.IsClosed()
	}, s.log)
}

// processID names this process in its accounting keys: hostname-pid (the
// incarnation's start time is added by live.NewLedger).
func processID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "comparator"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}
