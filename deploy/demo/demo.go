// Package demo is the demo primary, secondary and shadow used by
// `make demo` and the end-to-end tests. The shadow differs from the primary
// on purpose, one route per kind of regression darklaunch exists to catch:
//
//	GET /api/users/{id}       identical on both sides
//	GET /api/orders/{id}      shadow changed the JSON shape ($.total became an object, $.currency moved into it)
//	GET /api/search?q=...     shadow is several times slower (primary ~2 ms, shadow ~10 ms)
//	GET /api/inventory/{sku}  shadow answers 500 on every 10th request (numeric SKUs)
//	GET /api/status           noise, not a regression: every variant answers a random request_id and the
//	                          current time (generated_at), so every pair differs there, and so does
//	                          primary against secondary; status and version are the same everywhere
//	POST /api/orders          creates an order (a write: mirrored only if the launch lists POST)
//
// The secondary is a second instance of the primary's version: it answers
// exactly as the primary does (a launch's secondary_url points at it, so
// darklaunch can tell the primary's own nondeterminism from regressions).
package demo

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Variants of the demo app.
const (
	Primary   = "primary"
	Secondary = "secondary"
	Shadow    = "shadow"
)

// Version is what /api/status reports in every variant: the shadow's build
// differs, but a version field that differed would be a real difference on
// a route meant to show pure noise.
const Version = "2026.11.1"

// Options tune the demo app; zero values take the defaults above.
type Options struct {
	// SearchDelay is the primary's delay on /api/search; the shadow's is
	// SlowFactor times that (default 5).
	SearchDelay time.Duration
	SlowFactor  int
	// ErrorEvery makes the shadow fail every n-th inventory request.
	ErrorEvery int
}

// Handler returns the demo app for a variant ("primary", "secondary" or
// "shadow").
func Handler(variant string, o Options) (http.Handler, error) {
	if variant != Primary && variant != Secondary && variant != Shadow {
		return nil, fmt.Errorf("demo variant %q: want %q, %q or %q", variant, Primary, Secondary, Shadow)
	}
	if o.SearchDelay == 0 {
		o.SearchDelay = 2 * time.Millisecond
	}
	if o.SlowFactor == 0 {
		o.SlowFactor = 5
	}
	if o.ErrorEvery == 0 {
		o.ErrorEvery = 10
	}
	a := &app{shadow: variant == Shadow, opts: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/users/{id}", a.user)
	mux.HandleFunc("GET /api/orders/{id}", a.order)
	mux.HandleFunc("POST /api/orders", a.createOrder)
	mux.HandleFunc("GET /api/search", a.search)
	mux.HandleFunc("GET /api/inventory/{sku}", a.inventory)
	mux.HandleFunc("GET /api/status", a.status)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "ok", "variant": variant})
	})
	return mux, nil
}

type app struct {
	shadow     bool
	opts       Options
	inventoryN atomic.Int64
	created    atomic.Int64
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func idOf(r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	return id, err == nil && id > 0
}

func (a *app) user(w http.ResponseWriter, r *http.Request) {
	id, ok := idOf(r)
	if !ok {
		writeJSON(w, 404, map[string]string{"error": "no such user"})
		return
	}
	writeJSON(w, 200, map[string]any{
		"id": id, "name": fmt.Sprintf("User %d", id), "email": fmt.Sprintf("user%d@example.com", id),
		"roles": []string{"reader", "writer"}[:1+id%2], "active": id%7 != 0,
	})
}

func (a *app) order(w http.ResponseWriter, r *http.Request) {
	id, ok := idOf(r)
	if !ok {
		writeJSON(w, 404, map[string]string{"error": "no such order"})
		return
	}
	total := float64(id%50)*1.25 + 10
	items := []map[string]any{{"sku": fmt.Sprintf("SKU-%d", id%13), "qty": 1 + id%3}}
	if a.shadow {
		// The regression: total became an object and currency moved into it.
		writeJSON(w, 200, map[string]any{"id": id, "total": map[string]any{"amount": total, "currency": "EUR"}, "items": items})
		return
	}
	writeJSON(w, 200, map[string]any{"id": id, "total": total, "currency": "EUR", "items": items})
}

func (a *app) createOrder(w http.ResponseWriter, r *http.Request) {
	n := a.created.Add(1)
	writeJSON(w, 201, map[string]any{"id": 100000 + n, "status": "created"})
}

func (a *app) search(w http.ResponseWriter, r *http.Request) {
	delay := a.opts.SearchDelay
	if a.shadow {
		delay *= time.Duration(a.opts.SlowFactor) // the regression: a slower query plan
	}
	time.Sleep(delay)
	q := strings.ToLower(r.URL.Query().Get("q"))
	writeJSON(w, 200, map[string]any{"query": q, "results": []string{q + "-1", q + "-2", q + "-3"}, "total": 3})
}

func (a *app) inventory(w http.ResponseWriter, r *http.Request) {
	n := a.inventoryN.Add(1)
	if a.shadow && n%int64(a.opts.ErrorEvery) == 0 {
		writeJSON(w, 500, map[string]string{"error": "inventory backend unavailable"})
		return
	}
	sku := r.PathValue("sku")
	writeJSON(w, 200, map[string]any{"sku": sku, "in_stock": len(sku)%2 == 0, "warehouse": "fra-1"})
}

func (a *app) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{
		"request_id": rand.Text(), "generated_at": time.Now().UTC().Format(time.RFC3339Nano),
		"status": "ok", "version": Version,
	})
}
