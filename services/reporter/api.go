package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/darklaunch/darklaunch/pkg/admin"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// actions are the POST /v1/launches/{id}/<action> state changes.
var actions = []string{"pause", "resume", "promote", "rollback"}

func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/launches", s.api(s.createLaunch))
	mux.HandleFunc("GET /v1/launches", s.api(s.listLaunches))
	mux.HandleFunc("GET /v1/launches/{id}", s.api(s.getLaunch))
	mux.HandleFunc("PATCH /v1/launches/{id}", s.api(s.patchLaunch))
	for _, a := range actions {
		mux.HandleFunc("POST /v1/launches/{id}/"+a, s.api(s.actionHandler(a)))
	}
	mux.HandleFunc("GET /v1/launches/{id}/report", s.api(s.getReport))
	mux.HandleFunc("GET /v1/launches/{id}/examples/{fingerprint}", s.api(s.getExamples))
	mux.HandleFunc("GET /healthz", s.healthz)
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

// errorBody is every API error: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "encode response: " + err.Error()})
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
	}
	writeError(w, code, msg)
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

// api makes h a handler whose failures are answered by fail.
func (s *Service) api(h apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
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

// updateLaunch applies change to the launch named in the path.
func (s *Service) updateLaunch(r *http.Request, change func(*launch.Launch) error) (*launch.Launch, error) {
	return withStore(s, r, func(ctx context.Context, store *launch.Store) (*launch.Launch, error) {
		return store.Update(ctx, r.PathValue("id"), change)
	})
}

// CreateRequest is the body of POST /v1/launches.
type CreateRequest struct {
	Name          string   `json:"name"`
	Service       string   `json:"service"`
	ShadowURL     string   `json:"shadow_url"`
	SecondaryURL  string   `json:"secondary_url"`
	SamplePercent float64  `json:"sample_percent"`
	Methods       []string `json:"methods"`
	// Compare are the launch's comparison rules (docs/compare.md).
	Compare compare.Rules `json:"compare"`
}

func (s *Service) createLaunch(w http.ResponseWriter, r *http.Request) error {
	var req CreateRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	l, err := withStore(s, r, func(ctx context.Context, store *launch.Store) (*launch.Launch, error) {
		return store.Create(ctx, launch.Launch{
			Name: req.Name, Service: req.Service, ShadowURL: req.ShadowURL, SecondaryURL: req.SecondaryURL,
			SamplePercent: req.SamplePercent, Methods: req.Methods, Compare: req.Compare,
		})
	})
	if err != nil {
		return err
	}
	s.metrics.actions.WithLabelValues("create").Inc()
	s.log.Info("launch created", "launch_id", l.ID, "name", l.Name, "service", l.Service,
		"shadow_url", l.ShadowURL, "secondary_url", l.SecondaryURL, "sample_percent", l.SamplePercent, "methods", l.Methods,
		"compare", rulesLog(l.Compare))
	w.Header().Set("Location", "/v1/launches/"+l.ID)
	writeJSON(w, http.StatusCreated, l)
	return nil
}

// LaunchList is the body of GET /v1/launches.
type LaunchList struct {
	Launches []*launch.Launch `json:"launches"`
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
	writeJSON(w, http.StatusOK, LaunchList{Launches: ls})
	return nil
}

func (s *Service) getLaunch(w http.ResponseWriter, r *http.Request) error {
	l, err := withStore(s, r, func(ctx context.Context, store *launch.Store) (*launch.Launch, error) {
		return store.Get(ctx, r.PathValue("id"))
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}

// PatchRequest is the body of PATCH /v1/launches/{id}. Absent (or null)
// fields are left as they are.
type PatchRequest struct {
	Name      *string `json:"name"`
	ShadowURL *string `json:"shadow_url"`
	// SecondaryURL "" removes the secondary.
	SecondaryURL  *string   `json:"secondary_url"`
	SamplePercent *float64  `json:"sample_percent"`
	Methods       *[]string `json:"methods"`
	// Compare replaces the launch's rules as a whole ({} restores the
	// defaults): merging rule lists field by field would leave no way to
	// remove one entry.
	Compare *compare.Rules `json:"compare"`
}

func (p *PatchRequest) empty() bool {
	return p.Name == nil && p.ShadowURL == nil && p.SecondaryURL == nil && p.SamplePercent == nil &&
		p.Methods == nil && p.Compare == nil
}

// apply changes l as the patch says and validates the result.
func (p *PatchRequest) apply(l *launch.Launch) error {
	if l.Status == launch.StatusPromoted || l.Status == launch.StatusRolledBack {
		return fmt.Errorf("%w: launch is %s; a finished launch cannot be changed", launch.ErrConflict, l.Status)
	}
	if p.Name != nil {
		l.Name = *p.Name
	}
	if p.ShadowURL != nil {
		l.ShadowURL = *p.ShadowURL
	}
	if p.SecondaryURL != nil {
		l.SecondaryURL = *p.SecondaryURL
	}
	if p.Compare != nil {
		l.Compare = *p.Compare
	}
	if p.SamplePercent != nil {
		l.SamplePercent = *p.SamplePercent
	}
	if p.Methods != nil {
		l.Methods = append([]string(nil), *p.Methods...)
	}
	return l.Normalize()
}

func (s *Service) patchLaunch(w http.ResponseWriter, r *http.Request) error {
	var req PatchRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	if req.empty() {
		return &httpError{http.StatusBadRequest, "PATCH body changes nothing; set at least one of name, shadow_url, secondary_url, sample_percent, methods, compare"}
	}
	l, err := s.updateLaunch(r, req.apply)
	if err != nil {
		return err
	}
	s.metrics.actions.WithLabelValues("patch").Inc()
	s.log.Info("launch changed", "launch_id", l.ID, "name", l.Name, "shadow_url", l.ShadowURL, "secondary_url", l.SecondaryURL,
		"sample_percent", l.SamplePercent, "methods", l.Methods, "compare", rulesLog(l.Compare), "revision", l.Revision)
	writeJSON(w, http.StatusOK, l)
	return nil
}

// rulesLog is the rules as one JSON log value.
func rulesLog(r compare.Rules) string {
	b, err := json.Marshal(r)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// ActionRequest is the optional body of the pause, resume, promote and
// rollback actions.
type ActionRequest struct {
	Reason string `json:"reason"`
}

// maxLoggedReason keeps one log line readable whatever a caller sends.
const maxLoggedReason = 500

func (s *Service) actionHandler(action string) apiFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req ActionRequest
		if err := decodeBody(w, r, &req, false); err != nil {
			return err
		}
		var from launch.Status
		l, err := s.updateLaunch(r, func(l *launch.Launch) error {
			from = l.Status
			to, err := launch.Transition(l.Status, action)
			if err != nil {
				return err
			}
			l.Status = to
			return nil
		})
		if err != nil {
			return err
		}
		reason := strings.TrimSpace(req.Reason)
		if len(reason) > maxLoggedReason {
			reason = reason[:maxLoggedReason] + "..."
		}
		s.metrics.actions.WithLabelValues(action).Inc()
		s.log.Info("launch status changed", "action", action, "launch_id", l.ID, "name", l.Name, "from", from, "to", l.Status,
			"reason", reason, "revision", l.Revision)
		writeJSON(w, http.StatusOK, l)
		return nil
	}
}

func (s *Service) getReport(w http.ResponseWriter, r *http.Request) error {
	var hit bool
	rep, err := withStore(s, r, func(ctx context.Context, store *launch.Store) (*Report, error) {
		l, err := store.Get(ctx, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		st, cached, err := s.stats(ctx, l.ID)
		if err != nil {
			return nil, fmt.Errorf("compute report of launch %s: %w", l.ID, err)
		}
		hit = cached
		return &Report{Launch: l, Stats: *st}, nil
	})
	if err != nil {
		return err
	}
	cache := "miss"
	if hit {
		cache = "hit"
	}
	s.metrics.reports.WithLabelValues(cache).Inc()
	w.Header().Set("X-Darklaunch-Cache", cache)
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *Service) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	code, rep := admin.Health(ctx, s.checks())
	writeJSON(w, code, rep)
}
