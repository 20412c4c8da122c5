package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// cacheOpTimeout bounds one Redis call: the cache is an optimisation and
// must not hold a report back.
const cacheOpTimeout = 300 * time.Millisecond

// cacheLogEvery is the least time between two logged cache failures.
const cacheLogEvery = 10 * time.Second

// stats returns the launch's statistics and whether they came from the
// Redis cache. Concurrent calls for one launch on a cold cache share one
// ClickHouse computation. A failing Redis is logged and counted, never
// returned: the report is then computed in ClickHouse.
func (s *Service) stats(ctx context.Context, launchID string) (*Stats, bool, error) {
	if st, ok := s.cacheGet(ctx, launchID); ok {
		return st, true, nil
	}
	type result struct {
		st  *Stats
		hit bool
	}
	ch := s.flight.DoChan(launchID, func() (any, error) {
		if !s.flightStarted() {
			return nil, fmt.Errorf("%w: the reporter is shutting down", errNotReady)
		}
		defer s.flights.Done()
		// A flight that finished just before this one started has filled
		// the cache: look again rather than query ClickHouse twice.
		if st, ok := s.cacheGet(ctx, launchID); ok {
			return result{st, true}, nil
		}
		conn, err := s.clickhouse()
		if err != nil {
			return nil, err
		}
		// The computation is shared by every caller waiting on this flight,
		// so it must not die with the first caller's request; it ends with
		// the service.
		qctx, cancel := context.WithTimeout(s.life, s.cfg.QueryTimeout)
		defer cancel()
		s.reportQueries.Add(1)
		s.metrics.reportQueries.Inc()
		start := time.Now()
		st, err := QueryStats(qctx, conn, s.cfg.ClickHouseDatabase, launchID, s.noise())
		s.metrics.reportQueryDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			s.metrics.reportQueryErrors.Inc()
			return nil, err
		}
		s.cacheSet(ctx, launchID, st)
		return result{st, false}, nil
	})
	select {
	case <-ctx.Done():
		// The flight goes on for the other callers and fills the cache.
		return nil, false, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return nil, false, res.Err
		}
		r := res.Val.(result)
		return r.st, r.hit, nil
	}
}

// flightStarted registers a report computation with Run's shutdown, which
// waits for it; it reports false once shutdown began.
func (s *Service) flightStarted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.flights.Add(1)
	return true
}

func cacheKey(launchID string) string { return cacheKeyPrefix + launchID }

func (s *Service) cacheGet(ctx context.Context, launchID string) (*Stats, bool) {
	if s.cfg.CacheTTL <= 0 {
		return nil, false
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheOpTimeout)
	defer cancel()
	b, err := s.rdb.Get(cctx, cacheKey(launchID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false
	}
	if err != nil {
		s.cacheFailed("get", launchID, err)
		return nil, false
	}
	var st Stats
	if err := json.Unmarshal(b, &st); err != nil {
		s.cacheFailed("decode", launchID, err)
		return nil, false
	}
	return &st, true
}

func (s *Service) cacheSet(ctx context.Context, launchID string, st *Stats) {
	if s.cfg.CacheTTL <= 0 {
		return
	}
	b, err := json.Marshal(st)
	if err != nil {
		s.log.Error("encode report for cache", "launch_id", launchID, "err", err)
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheOpTimeout)
	defer cancel()
	if err := s.rdb.Set(cctx, cacheKey(launchID), b, s.cfg.CacheTTL).Err(); err != nil {
		s.cacheFailed("set", launchID, err)
	}
}

// cacheFailed counts every cache failure but logs at most one every
// cacheLogEvery, so a Redis outage under steady polling does not flood the
// log.
func (s *Service) cacheFailed(op, launchID string, err error) {
	s.metrics.cacheErrors.WithLabelValues(op).Inc()
	now := time.Now().UnixNano()
	last := s.cacheLoggedAt.Load()
	if now-last < int64(cacheLogEvery) || !s.cacheLoggedAt.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("report cache unavailable; serving reports from ClickHouse",
		"op", op, "launch_id", launchID, "err", err)
}
