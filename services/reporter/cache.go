package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// cacheOpTimeout bounds one Redis call: the cache is an optimisation and
// must not hold a report back.
const cacheOpTimeout = 300 * time.Millisecond

// cacheLogEvery is the least time between two logged cache failures.
const cacheLogEvery = 10 * time.Second

// memoIdle: a value no request asked for in this long is forgotten.
const memoIdle = 10 * time.Minute

// refreshBackoff is the least time between two refreshes of one value
// after one failed.
const refreshBackoff = time.Second

// redisKeep is how long Redis keeps a value past its freshness: a replica
// with nothing in memory (just started) serves it as stale while it
// refreshes, instead of making its first poll wait for ClickHouse.
const redisKeep = 10 * time.Minute

// Cache sources, in X-Darklaunch-Cache.
const (
	// sourceHit: the numbers are younger than REPORTER_CACHE_TTL, from
	// this process's memory or from Redis (another replica computed them).
	sourceHit = "hit"
	// sourceStale: older than REPORTER_CACHE_TTL; one refresh is running
	// for every poll of the value and the next polls get its result.
	sourceStale = "stale"
	// sourceMiss: computed in ClickHouse for this request (or a concurrent
	// one whose computation it shared): nothing was there to serve.
	sourceMiss = "miss"
)

// memo is this process's copy of the values it serves: a report's
// numbers as their JSON (served without decoding), a verdict window's
// numbers. Redis is the copy shared by the replicas.
type memo struct {
	mu sync.Mutex
	m  map[string]*memoEntry
}

type memoEntry struct {
	val        any
	at         time.Time // when the value was computed
	refreshing atomic.Bool
	retryAfter atomic.Int64 // unix nanoseconds: no refresh before, after a failure
	used       atomic.Int64 // unix nanoseconds of the last read
}

func (m *memo) get(key string) *memoEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.m[key]
	if e != nil {
		e.used.Store(time.Now().UnixNano())
	}
	return e
}

// put stores a value unless a newer one is there, and forgets the values
// nobody read for memoIdle.
func (m *memo) put(key string, val any, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]*memoEntry{}
	}
	now := time.Now().UnixNano()
	if old := m.m[key]; old != nil && old.at.After(at) {
		return
	}
	e := &memoEntry{val: val, at: at}
	e.used.Store(now)
	m.m[key] = e
	for k, old := range m.m {
		if now-old.used.Load() > int64(memoIdle) && !old.refreshing.Load() {
			delete(m.m, k)
		}
	}
}

// codec stores a value in Redis and reads it back with the time it was
// computed.
type codec[T any] struct {
	encode func(T) ([]byte, error)
	decode func([]byte) (T, time.Time, error)
}

// reportCodec: a report's numbers are stored as their JSON, the bytes
// served.
var reportCodec = codec[[]byte]{
	encode: func(b []byte) ([]byte, error) { return b, nil },
	decode: func(b []byte) ([]byte, time.Time, error) {
		var v struct {
			GeneratedAt time.Time `json:"generated_at"`
		}
		err := json.Unmarshal(b, &v)
		if err == nil && (len(b) < 2 || b[0] != '{') {
			err = errors.New("not a JSON object")
		}
		return b, v.GeneratedAt, err
	},
}

var windowCodec = codec[*WindowStats]{
	encode: func(w *WindowStats) ([]byte, error) { return json.Marshal(w) },
	decode: func(b []byte) (*WindowStats, time.Time, error) {
		var w WindowStats
		err := json.Unmarshal(b, &w)
		return &w, w.GeneratedAt, err
	},
}

// stats returns the launch's statistics as JSON, when they were computed,
// and where they came from (sourceHit, sourceStale, sourceMiss).
func (s *Service) stats(ctx context.Context, launchID string) ([]byte, time.Time, string, error) {
	return cached(s, ctx, cacheKey(launchID), s.metrics.reportQueries, reportCodec,
		func(qctx context.Context, conn driver.Conn) ([]byte, time.Time, error) {
			start := time.Now()
			st, err := QueryStats(qctx, conn, s.cfg.ClickHouseDatabase, launchID, s.noise())
			if err == nil {
				st.Audit, err = analytics.ReadAudit(qctx, conn, s.cfg.ClickHouseDatabase, launchID, maxAudit)
			}
			if err == nil {
				st.Accounting = s.accounting(qctx, launchID, st.Totals.Compared)
			}
			s.metrics.reportQueryDuration.Observe(time.Since(start).Seconds())
			if err != nil {
				s.metrics.reportQueryErrors.Inc()
				return nil, time.Time{}, err
			}
			b, err := json.Marshal(st)
			return b, st.GeneratedAt, err
		})
}

// cached returns the value under key: from this process's memory while
// it is younger than REPORTER_CACHE_TTL; past that, still from memory
// (sourceStale) while one refresh runs in the background for every poll;
// with nothing in memory, from Redis if young enough, else computed in
// ClickHouse (counted in queries), waiting for it. Concurrent computations
// of one key share one. A refresh or computation stores the value in
// memory and in Redis. With REPORTER_CACHE_TTL 0 every call computes
// (still shared by concurrent calls).
func cached[T any](s *Service, ctx context.Context, key string, queries prometheus.Counter, c codec[T],
	compute func(context.Context, driver.Conn) (T, time.Time, error)) (T, time.Time, string, error) {
	var zero T
	if s.cfg.CacheTTL > 0 {
		if e := s.memo.get(key); e != nil {
			if time.Since(e.at) < s.cfg.CacheTTL {
				return e.val.(T), e.at, sourceHit, nil
			}
			refresh(s, key, e, queries, c, compute)
			return e.val.(T), e.at, sourceStale, nil
		}
	}
	ch := s.flight.DoChan(key, func() (any, error) { return fill(s, key, queries, c, compute, true) })
	select {
	case <-ctx.Done():
		// The flight goes on for the other callers and fills the cache.
		return zero, time.Time{}, "", ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return zero, time.Time{}, "", res.Err
		}
		r := res.Val.(filled[T])
		if r.source == sourceStale {
			if e := s.memo.get(key); e != nil {
				refresh(s, key, e, queries, c, compute)
			}
		}
		return r.v, r.at, r.source, nil
	}
}

type filled[T any] struct {
	v      T
	at     time.Time
	source string
}

// refresh starts the background refresh of a stale entry, unless one is
// running or the last one failed less than refreshBackoff ago.
func refresh[T any](s *Service, key string, e *memoEntry, queries prometheus.Counter, c codec[T],
	compute func(context.Context, driver.Conn) (T, time.Time, error)) {
	if time.Now().UnixNano() < e.retryAfter.Load() || !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.refreshing.Store(false)
		res := <-s.flight.DoChan(key, func() (any, error) { return fill(s, key, queries, c, compute, false) })
		if res.Err != nil {
			e.retryAfter.Store(time.Now().Add(refreshBackoff).UnixNano())
			if !errors.Is(res.Err, errNotReady) {
				s.log.Warn("refresh failed; serving the previous numbers", "key", key, "err", res.Err)
			}
		}
	}()
}

// fill runs in a flight: the value from Redis when another replica
// computed it within the TTL (or, with stale, older: the caller then
// starts a refresh), else computed in ClickHouse; stored in memory and
// Redis. Without stale it is a background refresh (stale numbers are
// being served meanwhile): its queries run as analytics.Background.
func fill[T any](s *Service, key string, queries prometheus.Counter, c codec[T],
	compute func(context.Context, driver.Conn) (T, time.Time, error), stale bool) (any, error) {
	if !s.flightStarted() {
		return nil, fmt.Errorf("%w: the reporter is shutting down", errNotReady)
	}
	defer s.flights.Done()
	if s.cfg.CacheTTL > 0 {
		if b, ok := s.cacheGet(key); ok {
			v, at, err := c.decode(b)
			switch {
			case err != nil:
				s.cacheFailed("decode", key, err)
			case time.Since(at) < s.cfg.CacheTTL:
				s.memo.put(key, v, at)
				return filled[T]{v, at, sourceHit}, nil
			case stale:
				s.memo.put(key, v, at)
				return filled[T]{v, at, sourceStale}, nil
			}
		}
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
	if !stale {
		// A refresh of numbers being served stale: nobody waits for it,
		// so it leaves the other cores to the polls.
		qctx = analytics.Background(qctx)
	}
	queries.Inc()
	v, at, err := compute(qctx, conn)
	if err != nil {
		return nil, err
	}
	if s.cfg.CacheTTL > 0 {
		s.memo.put(key, v, at)
		if b, err := c.encode(v); err != nil {
			s.log.Error("encode for cache", "key", key, "err", err)
		} else {
			s.cacheSet(key, b)
		}
	}
	return filled[T]{v, at, sourceMiss}, nil
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

func (s *Service) cacheGet(key string) ([]byte, bool) {
	cctx, cancel := context.WithTimeout(s.life, cacheOpTimeout)
	defer cancel()
	b, err := s.rdb.Get(cctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false
	}
	if err != nil {
		s.cacheFailed("get", key, err)
		return nil, false
	}
	return b, true
}

func (s *Service) cacheSet(key string, b []byte) {
	cctx, cancel := context.WithTimeout(s.life, cacheOpTimeout)
	defer cancel()
	if err := s.rdb.Set(cctx, key, b, s.cfg.CacheTTL+redisKeep).Err(); err != nil {
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
	s.log.Warn("report cache unavailable; serving reports from memory and ClickHouse",
		"op", op, "key", key, "err", err)
}

// launchJSONCache keeps each launch's JSON (its secrets redacted) for its
// revision, so a poll does not encode the launch again.
type launchJSONCache struct {
	mu sync.Mutex
	m  map[string]launchBytes
}

type launchBytes struct {
	rev uint64
	b   []byte
}

func (c *launchJSONCache) get(l *launch.Launch) ([]byte, error) {
	c.mu.Lock()
	lb, ok := c.m[l.ID]
	c.mu.Unlock()
	if ok && lb.rev == l.Revision {
		return lb.b, nil
	}
	b, err := json.Marshal(l.Redacted()) // as GET /v1/launches/{id} shows it
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]launchBytes{}
	}
	if len(c.m) > 10_000 { // launches deleted long ago
		clear(c.m)
	}
	c.m[l.ID] = launchBytes{l.Revision, b}
	c.mu.Unlock()
	return b, nil
}
