package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
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
func (s *Service) stats(ctx context.Context, launchID string) (*api.Stats, bool, error) {
	return cached(s, ctx, cacheKey(launchID), s.metrics.reportQueries, func(qctx context.Context, conn driver.Conn) (*api.Stats, error) {
		start := time.Now()
		st, err := QueryStats(qctx, conn, s.cfg.ClickHouseDatabase, launchID, s.noise())
		if err == nil {
			st.Audit, err = analytics.ReadAudit(qctx, conn, s.cfg.ClickHouseDatabase, launchID, maxAudit)
		}
		s.metrics.reportQueryDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			s.metrics.reportQueryErrors.Inc()
		}
		return st, err
	})
}

// cached returns the value under key from Redis, or computes it in
// ClickHouse (counting the computation in queries) and stores it for
// REPORTER_CACHE_TTL. Concurrent calls for one key on a cold cache share one
// computation; the bool says whether the value came from Redis.
func cached[T any](s *Service, ctx context.Context, key string, queries prometheus.Counter,
	compute func(context.Context, driver.Conn) (*T, error)) (*T, bool, error) {
	if v, ok := cacheGet[T](s, ctx, key); ok {
		return v, true, nil
	}
	type result struct {
		v   *T
		hit bool
	}
	ch := s.flight.DoChan(key, func() (any, error) {
		if !s.flightStarted() {
			return nil, fmt.Errorf("%w: the reporter is shutting down", errNotReady)
		}
		defer s.flights.Done()
		// A flight that finished just before this one started has filled
		// the cache: look again rather than query ClickHouse twice.
		if v, ok := cacheGet[T](s, ctx, key); ok {
			return result{v, true}, nil
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
		queries.Inc()
		v, err := compute(qctx, conn)
		if err != nil {
			return nil, err
		}
		cacheSet(s, ctx, key, v)
		return result{v, false}, nil
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
		return r.v, r.hit, nil
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

func cacheGet[T any](s *Service, ctx context.Context, key string) (*T, bool) {
	if s.cfg.CacheTTL <= 0 {
		return nil, false
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheOpTimeout)
	defer cancel()
	b, err := s.rdb.Get(cctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false
	}
	if err != nil {
		s.cacheFailed("get", key, err)
		return nil, false
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		s.cacheFailed("decode", key, err)
		return nil, false
	}
	return &v, true
}

func cacheSet[T any](s *Service, ctx context.Context, key string, v *T) {
	if s.cfg.CacheTTL <= 0 {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode for cache", "key", key, "err", err)
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheOpTimeout)
	defer cancel()
	if err := s.rdb.Set(cctx, key, b, s.cfg.CacheTTL).Err(); err != nil {
		s.cacheFailed("set", key, err)
	}
}

// cacheFailed counts every cache failure but logs at most one every
// cacheLogEvery, so a Redis outage under steady polling does not flood the
// log.
func (s *Service) cacheFailed(op, key string, err error) {
	s.metrics.cacheErrors.WithLabelValues(op).Inc()
	now := time.Now().UnixNano()
	last := s.cacheLoggedAt.Load()
	if now-last < int64(cacheLogEvery) || !s.cacheLoggedAt.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("report cache unavailable; serving reports from ClickHouse",
		"op", op, "key", key, "err", err)
}
