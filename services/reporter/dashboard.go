package reporter

import (
	_ "embed"
	"net/http"
)

// dashboardHTML is the whole dashboard: markup, style and script in one
// file so it needs no asset route and no external fetch.
//
//go:embed dashboard.html
var dashboardHTML []byte

func serveDashboard(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Inline script and style only, API calls to this origin only.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(dashboardHTML)
}
