package reporter

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/retry"
)

// retentionEvery is how often retention is enforced (partition drops).
const retentionEvery = time.Hour

// fullCheckEvery: every this many intervals compaction looks at all of a
// launch's minutes (for late rows in old ones); in between at the last
// few minutes only.
const fullCheckEvery = 12

// recentMinutes is how far back a partial check looks, before the
// watermark.
const recentMinutes = 3 * time.Minute

// compactTimeout bounds one launch's compaction. A long launch's first
// one (after an upgrade) may take longer: its seals are written a chunk at
// a time, oldest first, and the next compaction goes on from there.
const compactTimeout = 2 * time.Minute

// finishedCheckEvery: a launch that neither mirrors nor serves live
// traffic is compacted only every this many intervals (late rows of it
// are rare, and reports stay exact meanwhile: unsealed buckets are read
// raw).
const finishedCheckEvery = 20

// compactionLease is the key, in the lease bucket, of the right to
// compact: launch keys are UUIDs, so it cannot clash with one.
const compactionLease = "compaction"

// runCompaction seals the launches' finished buckets every
// REPORTER_COMPACT_INTERVAL (see analytics.Compact) and enforces
// retention every hour, until ctx ends. Every reporter replica runs it,
// but only the one holding the compaction lease (the key "compaction" in
// the controllers' lease bucket, darklaunch_leases) compacts: the others
// would read the same rows again for nothing. The holder renews the lease
// at each tick and, while a tick runs (a first catch-up of a long launch
// takes minutes), every third of REPORTER_LEASE_TTL; a tick whose renewal
// fails stops. It gives the lease up on shutdown, so another replica
// takes over at its next tick. Should two replicas compact at once all
// the same (a renewal late past the TTL), nothing breaks: each seal is a
// version and readers use the latest.
func (s *Service) runCompaction(ctx context.Context) {
	var (
		lastRetention time.Time
		lease         *kvLeases
	)
	tick := 0
	// full holds the launches this process compacted whole while holding
	// the lease: until then a launch gets only full compactions, because
	// sealing its last minutes first would move its watermark past
	// minutes not sealed yet (another replica may have compacted
	// meanwhile, or nobody).
	full := map[string]bool{}
	hold := func() bool {
		held, err := lease.Hold(ctx, compactionLease)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("compaction lease", "err", err)
		}
		if !held && len(full) > 0 {
			s.log.Info("compaction lease lost; another reporter compacts", "id", s.id)
			clear(full)
		}
		return held
	}
	retry.Every(ctx, s.cfg.CompactInterval, func() {
		tick++
		if lease == nil {
			if l := s.leases.Load(); l != nil {
				lease = newKVLeases(l.kv, s.id)
				lease.errors = s.metrics.leaseErrors.Inc
			}
		}
		w, conn := s.watcher.Load(), s.ch.Get()
		if w == nil || conn == nil || lease == nil || !hold() {
			return
		}
		// The tick's work stops when a renewal during it fails (the lease
		// was lost: another replica may compact now). Only this goroutine
		// renews meanwhile: two concurrent renewals of one revision would
		// make one fail.
		wctx, stop := context.WithCancel(ctx)
		var renewer sync.WaitGroup
		renewer.Go(func() {
			retry.Every(wctx, s.cfg.LeaseTTL/3, func() {
				// ctx, not wctx: the end of the tick must not cut a
				// renewal short (a failed one drops the lease).
				if held, err := lease.Hold(ctx, compactionLease); !held && ctx.Err() == nil {
					s.log.Warn("compaction lease lost during a compaction; stopping it", "err", err)
					stop()
				}
			})
		})
		defer func() { stop(); renewer.Wait() }()
		for id, l := range w.Snapshot().ByID {
			if wctx.Err() != nil {
				return
			}
			if !l.Mirrored() && !l.Live() && tick%finishedCheckEvery != 1 {
				continue
			}
			var since time.Time
			if full[id] && tick%fullCheckEvery != 1 {
				since = time.Now().Add(-s.cfg.SealAfter - recentMinutes)
			}
			ok := s.compactLaunch(wctx, conn, id, l, since)
			full[id] = full[id] || (ok && since.IsZero())
		}
		if time.Since(lastRetention) >= retentionEvery {
			lastRetention = time.Now()
			s.enforceRetention(wctx, conn)
		}
	})
	if lease != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		lease.Release(rctx, compactionLease)
		cancel()
	}
}

// compactLaunch compacts one launch (its last minutes from since on, or
// all of it when since is zero) and reports whether it succeeded.
func (s *Service) compactLaunch(ctx context.Context, conn driver.Conn, id string, l *launch.Launch, since time.Time) bool {
	cctx, cancel := context.WithTimeout(analytics.Background(ctx), compactTimeout)
	defer cancel()
	start := time.Now()
	res, err := analytics.CompactRecent(cctx, conn, s.cfg.ClickHouseDatabase, id, time.Now(), s.cfg.SealAfter, since)
	s.metrics.compactDuration.Observe(time.Since(start).Seconds())
	s.metrics.sealedBuckets.WithLabelValues("sealed").Add(float64(res.Sealed))
	s.metrics.sealedBuckets.WithLabelValues("resealed").Add(float64(res.Resealed))
	if err != nil {
		s.metrics.compactions.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			s.log.Warn("compaction failed", "launch_id", id, "err", err)
		}
		return false
	}
	s.metrics.compactions.WithLabelValues("ok").Inc()
	if res.Sealed+res.Resealed > 0 {
		s.log.Debug("compacted", "launch_id", id, "status", l.Status, "sealed", res.Sealed, "resealed", res.Resealed,
			"rows", res.Rows, "pending", res.Pending, "duration", time.Since(start))
	}
	return true
}

// enforceRetention drops the month partitions past REPORTER_RETENTION
// (raw rows) and REPORTER_AGGREGATE_RETENTION (aggregates).
func (s *Service) enforceRetention(ctx context.Context, conn driver.Conn) {
	for _, r := range []struct {
		tables    []string
		retention time.Duration
	}{{analytics.RawTables, s.cfg.Retention}, {analytics.AggregateTables, s.cfg.AggregateRetention}} {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
		dropped, err := analytics.DropExpired(cctx, conn, s.cfg.ClickHouseDatabase, time.Now(), r.tables, r.retention)
		cancel()
		for _, d := range dropped {
			s.log.Info("retention: partition dropped", "partition", d, "retention", r.retention)
			table, _, _ := strings.Cut(d, "/")
			s.metrics.droppedPartitions.WithLabelValues(table).Inc()
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("retention failed", "err", err)
		}
	}
}
