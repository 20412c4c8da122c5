// Package admin serves a service's health and metrics on their own address,
// apart from any traffic port, so no path of a proxied service is shadowed.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is reachable; nil means healthy.
type Check func(ctx context.Context) error

// Server serves GET /healthz, GET /readyz and GET /metrics.
type Server struct {
	Registry *prometheus.Registry
	checks   map[string]Check
	optional map[string]bool // checks /readyz reports without failing on
	warnings []string
	ln       net.Listener
	routes   []route
	log      *slog.Logger
}

// New returns a server with a fresh registry holding Go and process
// collectors. Add checks and routes before calling Serve.
func New(log *slog.Logger) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Server{Registry: reg, checks: map[string]Check{}, optional: map[string]bool{}, log: log}
}

// AddCheck registers a named health check: a dependency the service
// cannot work without. /healthz and /readyz answer 503 while it fails.
func (s *Server) AddCheck(name string, c Check) { s.checks[name] = c }

// AddOptionalCheck registers a dependency the service works without, less
// well (the reporter's cache). /healthz answers 503 while it fails, like
// any check, so monitoring sees it; /readyz reports it but stays 200, so
// an outage of it does not take every instance out of its load balancer.
func (s *Server) AddOptionalCheck(name string, c Check) {
	s.checks[name] = c
	s.optional[name] = true
}

// AddWarning adds a warning every health report carries. Call it before
// Serve.
func (s *Server) AddWarning(w string) { s.warnings = append(s.warnings, w) }

// Health runs the server's checks (see the function Health) and adds its
// warnings: the /healthz report, for a service that also serves it on
// another address.
func (s *Server) Health(ctx context.Context) (int, HealthReport) {
	code, rep := Health(ctx, s.checks)
	rep.Warnings = s.warnings
	return code, rep
}

// Ready is Health for /readyz: a failing optional check is reported, and
// makes the status "degraded", but the code stays 200.
func (s *Server) Ready(ctx context.Context) (int, HealthReport) {
	code, rep := s.Health(ctx)
	if code == http.StatusOK {
		return code, rep
	}
	for name, result := range rep.Checks {
		if result != "ok" && !s.optional[name] {
			return code, rep
		}
	}
	return http.StatusOK, rep
}

type route struct {
	pattern string
	h       http.Handler
}

// Handler returns the admin routes: /healthz, /readyz, /metrics and those added
// with Handle.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.ServeHealth)
	mux.HandleFunc("GET /readyz", s.ServeReady)
	for _, r := range s.routes {
		mux.Handle(r.pattern, r.h)
	}
	return mux
}

// ServeHealth answers /healthz (every check must pass), for a service
// that also serves it on another address.
func (s *Server) ServeHealth(w http.ResponseWriter, r *http.Request) { s.report(w, r, s.Health) }

// ServeReady answers /readyz (every check but the optional ones must pass).
func (s *Server) ServeReady(w http.ResponseWriter, r *http.Request) { s.report(w, r, s.Ready) }

func (s *Server) report(w http.ResponseWriter, r *http.Request, run func(context.Context) (int, HealthReport)) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status, body := run(ctx)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// HealthReport is the /healthz body.
type HealthReport struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	// Warnings say what runs but should not in production (a reporter
	// without authentication); they do not make the status degraded.
	Warnings []string `json:"warnings,omitempty"`
}

// Health runs every check and returns 200 with status "ok" when all pass,
// else 503 with status "degraded"; each check's result is "ok" or its error.
func Health(ctx context.Context, checks map[string]Check) (int, HealthReport) {
	rep := HealthReport{Status: "ok", Checks: map[string]string{}}
	for name, c := range checks {
		if err := c(ctx); err != nil {
			rep.Checks[name] = err.Error()
			rep.Status = "degraded"
		} else {
			rep.Checks[name] = "ok"
		}
	}
	if rep.Status != "ok" {
		return http.StatusServiceUnavailable, rep
	}
	return http.StatusOK, rep
}

// ShutdownTimeout bounds how long Serve waits for in-flight admin
// requests (a slow /healthz check) once its context ends.
const ShutdownTimeout = 5 * time.Second

// Listen binds addr; each service calls it in New, so a busy port fails
// construction and Addr is known before Run.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln = ln
	return nil
}

// Handle adds a route beside /healthz and /metrics (the mirror's /livez).
// Call it before Serve.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.routes = append(s.routes, route{pattern, h})
}

// HandleProfiles serves Go's profiles (net/http/pprof) under
// /debug/pprof/, for a service whose PPROF is on. Call it before Serve.
func (s *Server) HandleProfiles() {
	s.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	s.Handle("GET /debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
	s.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	s.Handle("GET /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	s.Handle("POST /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	s.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
}

// Serve serves on the listener bound by Listen until ctx ends, then shuts
// down, letting in-flight requests finish within ShutdownTimeout. It is
// each service's one admin lifecycle, called from its Run. It returns nil
// after a clean stop, or the error that stopped serving; the listener is
// closed either way.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		return errors.New("admin: Serve before Listen")
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("admin server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("admin server shutdown", "err", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}

// Close releases the listener of a server that will not Serve (a service
// built and never run). Serve closes it by itself.
func (s *Server) Close() error {
	if s.ln == nil {
		return nil
	}
	return s.ln.Close()
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }
