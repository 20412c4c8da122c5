package mirror

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/retry"
)

// liveReportTimeout bounds one live report (opening the bucket included).
// A slow report delays the next one (the ticker drops ticks) and never a
// request.
const liveReportTimeout = 5 * time.Second

// finalLiveReportTimeout bounds the report written at shutdown.
const finalLiveReportTimeout = 2 * time.Second

// liveReportLoop writes the live launch's counters to the KV bucket every
// MIRROR_LIVE_REPORT_INTERVAL until ctx ends. Run writes the last report
// itself, once the requests in flight have finished, so that the final
// counts are complete and no report of this loop can overwrite them.
func (s *Service) liveReportLoop(ctx context.Context, js jetstream.JetStream) {
	retry.Every(ctx, s.cfg.LiveReportInterval, func() { s.reportLive(ctx, js) })
}

// reportLive writes one snapshot of the live launch this tap routes (if
// any): its current live step's counters. The request path is not
// involved: it reads the same atomics the requests add to. It is called
// from one goroutine at a time (the loop, then Run after the loop ended),
// which owns s.liveKV.
func (s *Service) reportLive(ctx context.Context, js jetstream.JetStream) {
	s.reportAccounting(ctx, js)
	lr := s.currentRoutes().live
	if lr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, liveReportTimeout)
	defer cancel()
	// The bucket is opened when there is something to report, and again
	// after a failure: a NATS server that lost its storage has lost the
	// bucket too.
	if s.liveKV == nil {
		kv, err := live.OpenBucket(ctx, js)
		if err != nil {
			s.liveReportFailed(ctx, lr.l.ID, err)
			return
		}
		s.liveKV = kv
	}
	snap := lr.stats.stats().Snapshot(s.cfg.TapID, time.Now())
	if err := live.Publish(ctx, s.liveKV, snap); err != nil {
		s.liveKV = nil
		s.liveReportFailed(ctx, lr.l.ID, err)
		return
	}
	s.stats.liveReports.Inc()
}

func (s *Service) liveReportFailed(ctx context.Context, launchID string, err error) {
	// Cut short by shutdown: the final report follows.
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return
	}
	s.stats.liveReportErrors.Inc()
	s.logThrottled(&s.lastLiveReportErrLog, slog.LevelWarn, "live report not written; the promotion gates see this tap's counters late",
		"launch", launchID, "err", err)
}
