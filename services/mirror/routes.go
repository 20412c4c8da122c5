package mirror

import (
	"context"
	"errors"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// routes is the tap's routing table for its service, derived from one
// launch snapshot: which launches sample requests (with their sticky keys
// parsed) and which launch, if any, serves live traffic (with its proxies
// built). The routes loop rebuilds it when the watcher swaps in a new
// snapshot and stores it in an atomic pointer, so the request path reads it
// with one atomic load and never parses, locks or allocates for it.
type routes struct {
	snap *launch.Snapshot // nil until the first snapshot
	// mirrored are the launches that sample requests, oldest first (ids are
	// UUIDv7), at most maxLaunches; launches[i] is mirrored[i].l.
	mirrored []mirrorRoute
	launches []*launch.Launch
	live     *liveRoute
	// filters: some launch in the table has path filters.
	filters bool
}

type mirrorRoute struct {
	l       *launch.Launch
	sticky  stickyKey
	filters bool // the launch has include or exclude paths
}

// liveRoute is the launch whose new version serves a share of live traffic.
type liveRoute struct {
	l       *launch.Launch
	sticky  stickyKey
	filters bool
	// stats are the launch's live counters and step the live_percent step
	// this table routes by, which counts the requests it routes.
	stats *liveStats
	step  *liveStep
	// newProxy sends to the launch's shadow_url, primaryProxy to the
	// primary; both count status classes into the launch's live stats.
	newProxy, primaryProxy *httputil.ReverseProxy
}

// Uses of a sticky key, the use label of sticky_key_missing_total.
const (
	useSample = iota
	useLive
	numUses
)

var useNames = [numUses]string{"sample", "live"}

// filterPath is the path the include and exclude patterns are matched
// against: decoded and cleaned, so that neither an escaped character
// ("/%61dmin") nor a dot segment ("/api/x/../admin") gets a request around
// an exclude. Cleaning a clean path does not allocate.
func filterPath(r *http.Request) string { return path.Clean(r.URL.Path) }

// sample decides which of the mirrored launches take this request (p is
// its filterPath when rt.filters): bit i of the result is set when
// rt.mirrored[i] does.
func (rt *routes) sample(r *http.Request, p string, c *metrics) uint64 {
	var mask uint64
	for i := range rt.mirrored {
		m := &rt.mirrored[i]
		if !m.l.AllowsMethod(r.Method) || (m.filters && !m.l.PathAllowed(p)) {
			continue
		}
		if draw(&m.sticky, m.l.ID, r, m.l.SamplePercent, c.stickyMissing[useSample]) {
			mask |= 1 << i
		}
	}
	return mask
}

// eligible: the request's path passes the live launch's filters. Live
// routing ignores the launch's methods: it serves live traffic, writes
// included, and splitting a user's reads from their writes would be worse.
func (lr *liveRoute) eligible(p string) bool {
	return !lr.filters || lr.l.PathAllowed(p)
}

// toNew decides whether an eligible request goes to the new version.
func (lr *liveRoute) toNew(r *http.Request, c *metrics) bool {
	return draw(&lr.sticky, lr.l.ID, r, lr.l.LivePercent, c.stickyMissing[useLive])
}

// draw decides whether a request falls within percent: by its user's bucket
// when the launch has a sticky key and the request carries it, at random
// otherwise (counted in missing when the key is set but absent).
func draw(k *stickyKey, launchID string, r *http.Request, percent float64, missing prometheus.Counter) bool {
	if k.set {
		if v, ok := k.value(r); ok {
			return launch.InSample(launch.UserBucket(launchID, v), percent)
		}
		missing.Inc()
	}
	// rand.Float64 is in [0,1): 100% always draws, 0% never does.
	return rand.Float64()*100 < percent
}

// LaunchRouting is what a tap does for one launch right now, as the request
// path sees it.
type LaunchRouting struct {
	// Revision is the KV revision of the launch in the tap's routing table;
	// 0 when the tap does not know the launch.
	Revision uint64
	// Mirrored: the launch samples requests. Live: the launch's new version
	// serves its live_percent of the requests.
	Mirrored, Live bool
}

// Routing reports what the tap does for a launch now.
func (s *Service) Routing(launchID string) LaunchRouting {
	rt := s.currentRoutes()
	var out LaunchRouting
	if rt.snap != nil {
		if l := rt.snap.ByID[launchID]; l != nil {
			out.Revision = l.Revision
		}
	}
	for _, l := range rt.launches {
		if l.ID == launchID {
			out.Mirrored = true
		}
	}
	out.Live = rt.live != nil && rt.live.l.ID == launchID
	return out
}

// RoutingChanged returns a channel closed when the tap next swaps in a new
// routing table. Take it before calling Routing, then wait on it: no change
// is missed.
func (s *Service) RoutingChanged() <-chan struct{} { return *s.routesChanged.Load() }

func (s *Service) setRoutes(rt *routes) {
	s.routes.Store(rt)
	next := make(chan struct{})
	close(*s.routesChanged.Swap(&next))
}

// currentRoutes returns the routing table for the watcher's current
// snapshot. The routes loop rebuilds the table as soon as the watcher swaps
// in a snapshot, but a request may come in between: it then builds the
// table itself, so that no request is routed by a snapshot older than the
// watcher's (a rollback holds from the moment the watcher has seen it).
// Otherwise this is two atomic loads and a comparison.
func (s *Service) currentRoutes() *routes {
	rt := s.routes.Load()
	if w := s.watcher.Load(); w != nil && w.Snapshot() != rt.snap {
		return s.refreshRoutes(w)
	}
	return rt
}

// refreshRoutes builds the routing table for the watcher's newest snapshot
// unless it is built already. The snapshot is read under the lock, so that
// a slow builder never stores a table older than one already stored.
func (s *Service) refreshRoutes(w *launch.Watcher) *routes {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	snap := w.Snapshot()
	rt := s.routes.Load()
	if rt.snap != snap {
		rt = s.builder.build(snap)
		s.setRoutes(rt)
	}
	return rt
}

// routesLoop rebuilds the routing table each time the watcher swaps in a
// snapshot, so that requests seldom have to.
func (s *Service) routesLoop(ctx context.Context, w *launch.Watcher) {
	for {
		changed := w.Changed()
		s.refreshRoutes(w)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// routeBuilder derives routing tables; it is used under Service.buildMu. It keeps what is worth keeping from
// one snapshot to the next: the parsed sticky key of each launch revision,
// and one tuned transport per new-version URL (its warm connections).
type routeBuilder struct {
	s       *Service
	parsed  map[string]parsedLaunch
	targets map[string]*http.Transport
	// warnedLive is the set of live launches last warned about, so that a
	// misconfiguration is logged once, not at every snapshot.
	warnedLive string
}

type parsedLaunch struct {
	rev    uint64
	sticky stickyKey
	err    error
}

func newRouteBuilder(s *Service) *routeBuilder {
	return &routeBuilder{s: s, parsed: map[string]parsedLaunch{}, targets: map[string]*http.Transport{}}
}

// sticky returns the launch's parsed sticky key, parsing it once per
// revision. A key that does not parse (the API validates it, so only a hand
// edit of the bucket) keeps the launch out of the table: the tap cannot know
// which users were meant.
func (b *routeBuilder) sticky(l *launch.Launch) (stickyKey, bool) {
	p, ok := b.parsed[l.ID]
	if !ok || p.rev != l.Revision {
		p.rev = l.Revision
		p.sticky, p.err = parseSticky(l.StickyKey)
		b.parsed[l.ID] = p
		if p.err != nil {
			b.s.log.Error("launch has an invalid sticky_key; neither mirroring nor routing it", "launch", l.ID, "err", p.err)
		}
	}
	return p.sticky, p.err == nil
}

func (b *routeBuilder) build(snap *launch.Snapshot) *routes {
	svc := b.s.cfg.Service
	rt := &routes{snap: snap}
	for id := range b.parsed {
		if snap.ByID[id] == nil {
			delete(b.parsed, id)
		}
	}

	ms := slices.Clone(snap.Mirrored[svc])
	slices.SortFunc(ms, func(a, b *launch.Launch) int { return strings.Compare(a.ID, b.ID) })
	for _, l := range ms {
		if len(rt.mirrored) == maxLaunches {
			break
		}
		k, ok := b.sticky(l)
		if !ok {
			continue
		}
		rt.mirrored = append(rt.mirrored, mirrorRoute{l: l, sticky: k, filters: hasFilters(l)})
		rt.launches = append(rt.launches, l)
		rt.filters = rt.filters || hasFilters(l)
	}

	rt.live = b.liveRoute(snap.Live[svc])
	rt.filters = rt.filters || (rt.live != nil && rt.live.filters)
	for u, tr := range b.targets {
		if rt.live == nil || rt.live.l.ShadowURL != u {
			tr.CloseIdleConnections()
			delete(b.targets, u)
		}
	}
	return rt
}

// liveRoute picks the service's live launch: one at most. When several are
// live (a state the API should not allow), the newest wins and it is logged
// once.
func (b *routeBuilder) liveRoute(live []*launch.Launch) *liveRoute {
	var ok []*launch.Launch
	for _, l := range live {
		if _, valid := b.sticky(l); valid {
			ok = append(ok, l)
		}
	}
	if len(ok) == 0 {
		b.warnedLive = ""
		return nil
	}
	slices.SortFunc(ok, func(a, b *launch.Launch) int { return strings.Compare(b.ID, a.ID) })
	l := ok[0]
	if len(ok) > 1 {
		ids := make([]string, len(ok))
		for i, o := range ok {
			ids[i] = o.ID
		}
		if set := strings.Join(ids, ","); set != b.warnedLive {
			b.warnedLive = set
			b.s.log.Warn("several launches of this service are live; only the newest serves live traffic",
				"service", b.s.cfg.Service, "serving", l.ID, "live", ids)
		}
	} else {
		b.warnedLive = ""
	}
	u, err := url.Parse(l.ShadowURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		b.s.log.Error("live launch has an invalid shadow_url; the primary keeps serving", "launch", l.ID, "shadow_url", l.ShadowURL)
		return nil
	}
	tr := b.targets[l.ShadowURL]
	if tr == nil {
		tr = newTransport(b.s.cfg)
		b.targets[l.ShadowURL] = tr
	}
	k, _ := b.sticky(l)
	stats, step := b.s.live.step(l.ID, l.LivePercent, time.Now())
	s := b.s
	newArm, primaryArm := &step.arms[armNew], &step.arms[armPrimary]
	return &liveRoute{
		l: l, sticky: k, filters: hasFilters(l), stats: stats, step: step,
		newProxy: s.armProxy(newRewrite(u, s.cfg), tr, newArm, func(w http.ResponseWriter, r *http.Request, err error) {
			s.newVersionError(w, r, err, l.ID, newArm)
		}),
		primaryProxy: s.armProxy(s.rewrite, s.transport, primaryArm, func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				primaryArm.classes[classError].Add(1)
			}
			s.errorHandler(w, r, err)
		}),
	}
}

// armProxy is a live route's proxy to one version: it counts every status
// the version answers in its arm, and hands failures to onErr.
func (s *Service) armProxy(rewrite func(*httputil.ProxyRequest), tr http.RoundTripper, arm *versionStats,
	onErr func(http.ResponseWriter, *http.Request, error)) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:    rewrite,
		Transport:  tr,
		BufferPool: s.pool,
		ErrorLog:   s.errLog,
		ModifyResponse: func(res *http.Response) error {
			arm.status(res.StatusCode)
			return nil
		},
		ErrorHandler: onErr,
	}
}

func hasFilters(l *launch.Launch) bool { return len(l.IncludePaths)+len(l.ExcludePaths) > 0 }

// closeTargets drops the idle connections to new versions at shutdown.
func (b *routeBuilder) closeTargets() {
	for _, tr := range b.targets {
		tr.CloseIdleConnections()
	}
}

// newVersionError answers 502 when a live launch's new version cannot be
// reached. The request is not retried on the primary: the body may be gone,
// and the live gates must see the failure.
func (s *Service) newVersionError(w http.ResponseWriter, r *http.Request, err error, launchID string, arm *versionStats) {
	if errors.Is(err, context.Canceled) {
		s.log.Debug("client gone before the new version answered", "method", r.Method, "path", r.URL.Path)
	} else {
		arm.classes[classError].Add(1)
		s.logThrottled(&s.lastLiveErrLog, slog.LevelWarn, "new version unreachable", "launch", launchID,
			"method", r.Method, "path", r.URL.Path, "err", err)
	}
	gatewayError(w, err)
}
