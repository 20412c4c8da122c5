package mirror

import (
	"context"
	"errors"
	"log/slog"
	"math/bits"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
)

// accounting is the tap's share of the loss accounting (pkg/live, Ledger):
// per launch, the envelopes it sampled, those the stream acknowledged and
// those it dropped by reason, written to the KV bucket
// darklaunch_accounting with the live reports (every
// MIRROR_LIVE_REPORT_INTERVAL, and once more at shutdown after the drain,
// when every sampled envelope is published or dropped).
//
// Counting: sampled when the request is sampled (serveSampled), dropped
// wherever drop is called (it takes the launch), published in published
// (a batch's envelopes once the stream acknowledged it). So once the tap
// is drained, per launch, sampled = published + dropped.
type accounting struct {
	ledger *live.Ledger
	// lastErrLog throttles the log of failed writes.
	lastErrLog atomic.Int64
}

// accountSampled counts one envelope started for each launch of mask.
func (s *Service) accountSampled(ls []*launch.Launch, mask uint64) {
	for ; mask != 0; mask &= mask - 1 {
		s.acct.ledger.Sampled(ls[bits.TrailingZeros64(mask)].ID, 1)
	}
}

// reportAccounting writes the counts of the launches that changed since
// the last write. It runs where reportLive runs (one goroutine at a time).
func (s *Service) reportAccounting(ctx context.Context, js jetstream.JetStream) {
	ctx, cancel := context.WithTimeout(ctx, liveReportTimeout)
	defer cancel()
	if _, err := s.acct.ledger.Flush(ctx, js); err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		s.logThrottled(&s.acct.lastErrLog, slog.LevelWarn, "loss accounting not written; the reports count this tap late", "err", err)
	}
}
