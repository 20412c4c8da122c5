package runner

import (
	"math"
	"sync"

	"golang.org/x/time/rate"
)

// loadCap enforces each launch's max_rps across the fleet: every runner
// allows max_rps / N replays per second, N being the live runners it counts.
// It never waits for a token: an envelope over the cap is skipped, because
// replaying it late would only distort the shadow's latency, and holding it
// would back up the queue for every other launch.
type loadCap struct {
	runners func() int

	mu       sync.Mutex
	byLaunch map[string]*rate.Limiter
}

func newLoadCap(runners func() int) *loadCap {
	return &loadCap{runners: runners, byLaunch: map[string]*rate.Limiter{}}
}

// share is one runner's part of maxRPS among n runners, and the burst it
// allows: at least one token (a share below 1 rps must still let a replay
// through now and then), otherwise one second's worth, so a runner that was
// idle can absorb a second's arrivals at once. Across N runners the bursts
// add up to about max_rps: the most the fleet can exceed the cap by over
// any window.
func share(maxRPS float64, n int) (rate.Limit, int) {
	s := maxRPS / float64(max(n, 1))
	return rate.Limit(s), max(1, int(math.Ceil(s)))
}

// allow reports whether a replay for the launch fits its cap now, taking a
// token if it does. maxRPS 0 means no cap.
func (c *loadCap) allow(launchID string, maxRPS float64) bool {
	if maxRPS <= 0 {
		return true
	}
	limit, burst := share(maxRPS, c.runners())
	c.mu.Lock()
	lim := c.byLaunch[launchID]
	if lim == nil {
		// Created on a launch's first envelope, full: the burst is
		// available at once.
		lim = rate.NewLimiter(limit, burst)
		c.byLaunch[launchID] = lim
	} else {
		// The launch's max_rps or the fleet's size changed: the
		// tokens already earned are kept (capped by the new burst).
		if lim.Limit() != limit {
			lim.SetLimit(limit)
		}
		if lim.Burst() != burst {
			lim.SetBurst(burst)
		}
	}
	c.mu.Unlock()
	return lim.Allow()
}

// prune forgets the limiters of launches keep rejects (gone, finished, or
// no longer capped), so the map does not grow with every launch ever seen.
func (c *loadCap) prune(keep func(launchID string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.byLaunch {
		if !keep(id) {
			delete(c.byLaunch, id)
		}
	}
}

// limiter returns the launch's limiter, nil when it has none (for tests).
func (c *loadCap) limiter(launchID string) *rate.Limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byLaunch[launchID]
}
