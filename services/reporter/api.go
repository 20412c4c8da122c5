package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// actions are the POST /v1/launches/{id}/<action> state changes besides
// promote, which has its own handler (live steps), each with the launch's
// transition it makes.
var actions = map[launch.Action]func(*launch.Launch, time.Time) error{
	launch.ActionPause:    func(l *launch.Launch, _ time.Time) error { return l.Pause() },
	launch.ActionResume:   (*launch.Launch).Resume,
	launch.ActionRollback: func(l *launch.Launch, _ time.Time) error { return l.Rollback() },
}

// auditActions name each action's audit entry.
var auditActions = map[launch.Action]string{
	launch.ActionPause: analytics.AuditPaused, launch.ActionResume: analytics.AuditResumed,
	launch.ActionPromote: analytics.AuditPromoted, launch.ActionRollback: analytics.AuditRolledBack,
}

func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	// Each route names the least scope it needs; PATCH needs more when
	// its fields do (launch.Patch.Scope, checked in patchLaunch).
	mux.HandleFunc("POST /v1/launches", s.api(launch.ScopeAdmin, s.createLaunch))
	mux.HandleFunc("GET /v1/launches", s.api(launch.ScopeRead, s.listLaunches))
	mux.HandleFunc("GET /v1/launches/{id}", s.api(launch.ScopeRead, s.getLaunch))
	mux.HandleFunc("PATCH /v1/launches/{id}", s.api(launch.ScopeOperate, s.patchLaunch))
	for a, do := range actions {
		mux.HandleFunc("POST /v1/launches/{id}/"+string(a), s.api(a.Scope(), s.actionHandler(a, do)))
	}
	mux.HandleFunc("POST /v1/launches/{id}/promote", s.api(launch.ActionPromote.Scope(), s.promoteLaunch))
	mux.HandleFunc("GET /v1/launches/{id}/report", s.api(launch.ScopeRead, s.getReport))
	mux.HandleFunc("GET /v1/launches/{id}/verdict", s.api(launch.ScopeRead, s.getVerdict))
	mux.HandleFunc("GET /v1/launches/{id}/examples/{fingerprint}", s.api(launch.ScopeRead, s.getExamples))
	// None needs a token: /healthz and /readyz say only whether the
	// dependencies are reachable, and the dashboard page holds no data
	// (its API calls carry the token the operator gives it).
	mux.HandleFunc("GET /healthz", s.admin.ServeHealth)
	mux.HandleFunc("GET /readyz", s.admin.ServeReady)
	mux.HandleFunc("GET /{$}", serveDashboard)

	// The API changes what production traffic is mirrored and may be
	// reachable from an operator's browser: refuse cross-origin browser
	// writes (CSRF), which is also what lets any Content-Type be tolerated.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused: call the API from the same origin or without a browser")
	}))
	return s.instrument(cop.Handler(jsonErrors(mux)))
}

// jsonErrors turns the mux's own plain-text 404 and 405 answers into JSON
// errors, since every error of the API is JSON.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			w = &muxErrorWriter{ResponseWriter: w, r: r}
		}
		mux.ServeHTTP(w, r)
	})
}

type muxErrorWriter struct {
	http.ResponseWriter
	r       *http.Request
	written bool
}

func (m *muxErrorWriter) WriteHeader(code int) {
	if code < 400 {
		m.ResponseWriter.WriteHeader(code)
		return
	}
	m.written = true
	msg := fmt.Sprintf("no route %s %s", m.r.Method, m.r.URL.Path)
	if code == http.StatusMethodNotAllowed {
		msg = fmt.Sprintf("method %s is not allowed on %s; allowed: %s", m.r.Method, m.r.URL.Path, m.Header().Get("Allow"))
	}
	m.Header().Del("X-Content-Type-Options")
	writeError(m.ResponseWriter, code, msg)
}

func (m *muxErrorWriter) Write(b []byte) (int, error) {
	if m.written {
		return len(b), nil // the plain-text body was replaced
	}
	return m.ResponseWriter.Write(b)
}

// statusWriter records the status code for metrics and logs.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Service) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		// Label by pattern, not path: ids would make cardinality unbounded.
		// The mux sets r.Pattern on the request it was handed.
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.code)).Inc()
		s.metrics.requestDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "code", sw.code, "duration", time.Since(start))
	})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.ErrorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(api.ErrorBody{Error: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// httpError is an error with the status code it answers.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// fail answers err as a JSON error, choosing the code from its kind; server
// side failures are logged.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	msg := err.Error()
	var he *httpError
	var chErr *clickhouse.Exception
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.Is(err, errUnauthenticated):
		code = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Bearer realm="darklaunch"`)
	case errors.Is(err, errForbidden):
		code = http.StatusForbidden
	case errors.Is(err, launch.ErrInvalid):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, launch.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, launch.ErrConflict):
		code = http.StatusConflict
	case errors.As(err, &chErr):
		// ClickHouse understood and rejected the query: a server bug.
		code = http.StatusInternalServerError
	default:
		// NATS or ClickHouse not connected, unreachable or too slow: the
		// client should retry later.
		code = http.StatusServiceUnavailable
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "timed out: " + msg
		}
	}
	if code >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
		msg = publicMessage(code, msg)
	}
	writeError(w, code, msg)
}

// publicMessage is what a 5xx answer says of a failure whose whole
// message (addresses, driver errors, queries) went to the log only: which
// dependency is not connected yet, or that one failed or was too slow.
func publicMessage(code int, msg string) string {
	switch {
	case code == http.StatusInternalServerError:
		return "internal error; the reporter's log has the details"
	case strings.HasPrefix(msg, "timed out"):
		return "timed out waiting for NATS or ClickHouse; retry later"
	case strings.Contains(msg, errNotReady.Error()+": "):
		return msg[strings.Index(msg, errNotReady.Error()+": "):] + "; retry later"
	}
	return "NATS, ClickHouse or Redis failed or is unreachable; retry later (the reporter's log has the details)"
}

// decodeBody reads one JSON object into dst. Unknown fields, trailing data
// and bodies over maxBodyBytes are refused. The Content-Type is not
// checked: a JSON body sent as curl -d's form type is still JSON (and
// cross-origin browser posts are refused separately). An empty body is an
// error only when required.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any, required bool) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		// Anything after the object is a client mistake worth reporting.
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = terr
			if err == nil {
				err = errors.New("request body must hold a single JSON object, found more data after it")
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		if v, ok := dst.(interface{ Validate() error }); ok {
			return v.Validate()
		}
		return nil
	case errors.As(err, &tooBig):
		return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit)}
	case errors.Is(err, io.EOF) && !required:
		return nil
	case errors.Is(err, io.EOF):
		return &httpError{http.StatusBadRequest, "request body is empty; expected a JSON object"}
	default:
		return &httpError{http.StatusBadRequest, "invalid JSON body: " + err.Error()}
	}
}

// apiFunc is an API handler that writes its answer on success and returns
// its failure for api to answer.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

// api makes h a handler of a route that needs scope, whose failures
// (authentication's included) are answered by fail.
func (s *Service) api(scope launch.Scope, h apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.authenticated(w, r, scope, h); err != nil {
			s.fail(w, r, err)
		}
	}
}

// withStore runs op on the launch store, bounded by the query timeout; it
// fails at once while the store is not connected.
func withStore[T any](s *Service, r *http.Request, op func(context.Context, *launch.Store) (T, error)) (T, error) {
	store, err := s.launchStore()
	if err != nil {
		var zero T
		return zero, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	return op(ctx, store)
}

// withPathLaunch reads the launch named in the path and runs op on it,
// both bounded by the query timeout.
func withPathLaunch[T any](s *Service, r *http.Request, op func(context.Context, *launch.Launch) (T, error)) (T, error) {
	return withStore(s, r, func(ctx context.Context, store *launch.Store) (T, error) {
		l, err := store.Get(ctx, r.PathValue("id"))
		if err != nil {
			var zero T
			return zero, err
		}
		return op(ctx, l)
	})
}

// pathLaunch reads the launch named in the path.
func (s *Service) pathLaunch(r *http.Request) (*launch.Launch, error) {
	return withPathLaunch(s, r, func(_ context.Context, l *launch.Launch) (*launch.Launch, error) { return l, nil })
}

// updateLaunch applies change to the launch named in the path.
func (s *Service) updateLaunch(r *http.Request, change func(*launch.Launch) error) (*launch.Launch, error) {
	return withStore(s, r, func(ctx context.Context, store *launch.Store) (*launch.Launch, error) {
		l, err := store.Update(ctx, r.PathValue("id"), change)
		if err == nil {
			s.awaitWatcher(ctx, l.ID, l.Revision)
		}
		return l, err
	})
}

func (s *Service) createLaunch(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	nl := req.Launch()
	if err := nl.Begin(req.SamplePercent, time.Now().UTC()); err != nil {
		return err
	}
	if err := nl.CheckTargets(s.cfg.allowed); err != nil {
		return err
	}
	l, err := withStore(s, r, func(ctx context.Context, store *launch.Store) (*launch.Launch, error) {
		l, err := store.Create(ctx, nl)
		if err == nil {
			s.awaitWatcher(ctx, l.ID, l.Revision)
		}
		return l, err
	})
	if err != nil {
		return err
	}
	s.metrics.actions.WithLabelValues("create").Inc()
	s.log.Info("launch created", "launch_id", l.ID, "name", l.Name, "service", l.Service,
		"shadow_url", l.ShadowURL, "secondary_url", l.SecondaryURL, "sample_percent", l.SamplePercent, "methods", l.Methods,
		"compare", rulesLog(l.Compare), "sticky_key", l.StickyKey, "ramp", jsonLog(l.Ramp), "actor", actor(r))
	s.audit(newAuditEntry(l, analytics.AuditCreated, "", actor(r), req.Reason, map[string]any{"launch": l.Redacted()}))
	w.Header().Set("Location", "/v1/launches/"+l.ID)
	writeJSON(w, http.StatusCreated, l.Redacted())
	return nil
}

func (s *Service) listLaunches(w http.ResponseWriter, r *http.Request) error {
	ls, err := withStore(s, r, func(ctx context.Context, store *launch.Store) ([]*launch.Launch, error) {
		return store.List(ctx)
	})
	if err != nil {
		return err
	}
	if ls == nil {
		ls = []*launch.Launch{}
	}
	for i, l := range ls {
		ls[i] = l.Redacted()
	}
	writeJSON(w, http.StatusOK, api.LaunchList{Launches: ls})
	return nil
}

func (s *Service) getLaunch(w http.ResponseWriter, r *http.Request) error {
	l, err := s.pathLaunch(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, l.Redacted())
	return nil
}

// patched is the fields a patch sets, for the audit log.
func patched(p launch.Patch) map[string]any {
	var m map[string]any
	if b, err := json.Marshal(p); err != nil || json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

func (s *Service) patchLaunch(w http.ResponseWriter, r *http.Request) error {
	var req api.PatchRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	if err := s.authorize(r, req.Patch.Scope()); err != nil {
		return err
	}
	if req.Patch.Empty() {
		return &httpError{http.StatusBadRequest, "PATCH body changes nothing; set at least one of name, shadow_url, secondary_url, sample_percent, methods, compare, sticky_key, include_paths, exclude_paths, max_rps, ramp, gates, capture"}
	}
	var from launch.Status
	l, err := s.updateLaunch(r, func(l *launch.Launch) error {
		from = l.Status
		if err := l.ApplyPatch(req.Patch, time.Now().UTC()); err != nil {
			return err
		}
		if req.Patch.ShadowURL == nil && req.Patch.SecondaryURL == nil {
			return nil // the allow-list judges the URLs a request sets
		}
		return l.CheckTargets(s.cfg.allowed)
	})
	if err != nil {
		return err
	}
	s.metrics.actions.WithLabelValues("patch").Inc()
	s.log.Info("launch changed", "launch_id", l.ID, "name", l.Name, "shadow_url", l.ShadowURL, "secondary_url", l.SecondaryURL,
		"sample_percent", l.SamplePercent, "methods", l.Methods, "compare", rulesLog(l.Compare), "sticky_key", l.StickyKey,
		"include_paths", l.IncludePaths, "exclude_paths", l.ExcludePaths, "max_rps", l.MaxRPS, "ramp", jsonLog(l.Ramp),
		"gates", jsonLog(l.Gates), "revision", l.Revision, "actor", actor(r))
	s.audit(newAuditEntry(l, analytics.AuditPatched, from, actor(r), req.Reason, map[string]any{"set": patched(req.Patch.Redacted()), "ramp_step": l.RampStep}))
	writeJSON(w, http.StatusOK, l.Redacted())
	return nil
}

// jsonLog is v as one JSON log value.
func jsonLog(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// rulesLog is the rules as one JSON log value.
func rulesLog(r compare.Rules) string {
	b, err := json.Marshal(r)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func (s *Service) actionHandler(action launch.Action, do func(*launch.Launch, time.Time) error) apiFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req api.ActionRequest
		if err := decodeBody(w, r, &req, false); err != nil {
			return err
		}
		return s.transition(w, r, action, req.Reason, do, nil)
	}
}

// transition makes a status change of the launch named in the path with do
// (one of the launch's transitions, given the time now), then logs, counts
// and audits it (with details of the changed launch, when given) and
// answers the launch.
func (s *Service) transition(w http.ResponseWriter, r *http.Request, action launch.Action, reason string,
	do func(*launch.Launch, time.Time) error, details func(*launch.Launch) any) error {
	var from launch.Status
	now := time.Now().UTC()
	l, err := s.updateLaunch(r, func(l *launch.Launch) error {
		from = l.Status
		return do(l, now)
	})
	if err != nil {
		return err
	}
	var d any
	if details != nil {
		d = details(l)
	}
	reason = clip(reason)
	s.metrics.actions.WithLabelValues(string(action)).Inc()
	s.log.Info("launch status changed", "action", action, "launch_id", l.ID, "name", l.Name, "from", from, "to", l.Status,
		"live_percent", l.LivePercent, "reason", reason, "revision", l.Revision, "actor", actor(r))
	s.audit(newAuditEntry(l, auditActions[action], from, actor(r), reason, d))
	writeJSON(w, http.StatusOK, l.Redacted())
	return nil
}

// promoteLaunch makes the new version serve live traffic: at the first
// live step's percentage (promoting; the controller steps it up) or at
// 100% at once (promoted). On a promoting launch it completes the promotion
// (100% now); on a promoted one it is a no-op.
func (s *Service) promoteLaunch(w http.ResponseWriter, r *http.Request) error {
	var req api.PromoteRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	promote := func(l *launch.Launch, now time.Time) error { return l.Promote(req.LiveSteps, now) }
	return s.transition(w, r, launch.ActionPromote, req.Reason, promote, func(l *launch.Launch) any {
		return map[string]any{"live_percent": l.LivePercent, "live_steps": req.LiveSteps}
	})
}

func (s *Service) getVerdict(w http.ResponseWriter, r *http.Request) error {
	l, err := s.memLaunch(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	v, source, err := s.verdictFor(ctx, l)
	if err != nil {
		return err
	}
	s.metrics.verdicts.WithLabelValues(v.Verdict).Inc()
	s.metrics.reportAge.WithLabelValues("verdict").Observe(v.AgeSeconds)
	setCacheHeaders(w, source, v.AgeSeconds)
	writeJSON(w, http.StatusOK, v)
	return nil
}

// getReport answers the launch (from the watcher's memory) and its
// numbers (the JSON kept in memory) without decoding or encoding either
// on a cache hit: {"launch":…,"age_seconds":…, then the numbers' fields}.
func (s *Service) getReport(w http.ResponseWriter, r *http.Request) error {
	l, err := s.memLaunch(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	stats, at, source, err := s.stats(ctx, l.ID)
	if err != nil {
		return fmt.Errorf("compute report of launch %s: %w", l.ID, err)
	}
	lj, err := s.launchJSON.get(l)
	if err != nil {
		return err
	}
	age := ageSeconds(at)
	// Three writes of the parts, not one copy of them: a poll then
	// allocates no report-sized buffer (about 40 KB, at 1,000 polls/s
	// the collector's main work).
	var mid [64]byte
	m := append(mid[:0], `,"age_seconds":`...)
	m = strconv.AppendFloat(m, age, 'f', -1, 64)
	m = append(m, ',')
	const head = `{"launch":`
	body := stats[1:] // stats is a JSON object with fields
	s.metrics.reports.WithLabelValues(source).Inc()
	s.metrics.reportAge.WithLabelValues("report").Observe(age)
	setCacheHeaders(w, source, age)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(head)+len(lj)+len(m)+len(body)+1))
	w.WriteHeader(http.StatusOK)
	for _, part := range [][]byte{[]byte(head), lj, m, body, {'\n'}} {
		if _, err := w.Write(part); err != nil {
			return nil // the client went away; nothing to answer
		}
	}
	return nil
}

// ageSeconds is the time since at, in seconds to the millisecond.
func ageSeconds(at time.Time) float64 {
	return math.Max(0, math.Round(time.Since(at).Seconds()*1000)/1000)
}

// setCacheHeaders says where the numbers came from (X-Darklaunch-Cache:
// hit, stale or miss) and how old they are (X-Darklaunch-Age, seconds).
func setCacheHeaders(w http.ResponseWriter, source string, age float64) {
	w.Header().Set("X-Darklaunch-Cache", source)
	w.Header().Set("X-Darklaunch-Age", strconv.FormatFloat(age, 'f', 3, 64))
}

// memLaunch is the launch named in the path, from the watcher's memory;
// from the store while the watcher has not read the bucket yet or does
// not know the launch (the store then answers 404 for an unknown id).
func (s *Service) memLaunch(r *http.Request) (*launch.Launch, error) {
	if w := s.watcher.Load(); w != nil {
		select {
		case <-w.Ready():
			if l := w.Snapshot().ByID[r.PathValue("id")]; l != nil {
				return l, nil
			}
		default:
		}
	}
	return s.pathLaunch(r)
}

// awaitWatcher waits (at most a second) until the watcher has seen the
// launch at revision rev or later, so the reporter's own change shows in
// the next report it serves.
func (s *Service) awaitWatcher(ctx context.Context, id string, rev uint64) {
	w := s.watcher.Load()
	if w == nil {
		return
	}
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	for {
		changed := w.Changed()
		if l := w.Snapshot().ByID[id]; l != nil && l.Revision >= rev {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
