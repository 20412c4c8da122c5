// Package reporter is the darklaunch HTTP API: launch control (create, list,
// patch, pause, resume, promote, roll back) over the NATS KV launch store,
// per-launch reports computed in ClickHouse and cached in Redis, and a small
// dashboard. Deploy tooling polls it, so the /v1 routes and their JSON are a
// contract documented in docs/api.md.
package reporter

import (
	"time"

	"github.com/darklaunch/darklaunch/pkg/config"
)

// Config is the reporter's settings, read from the environment.
type Config struct {
	Addr         string        `envconfig:"REPORTER_ADDR" default:":8090" desc:"listen address of the API (/v1), GET /healthz and the dashboard (GET /)"`
	AdminAddr    string        `envconfig:"REPORTER_ADMIN_ADDR" default:":8091" desc:"listen address of the admin server: GET /metrics (Prometheus) and GET /healthz"`
	CacheTTL     time.Duration `envconfig:"REPORTER_CACHE_TTL" default:"2s" desc:"how long a computed report is served from Redis; 0 disables the cache (concurrent polls are still collapsed)"`
	QueryTimeout time.Duration `envconfig:"REPORTER_QUERY_TIMEOUT" default:"10s" desc:"timeout of one report computation in ClickHouse and of one launch store operation"`
	config.NATS
	config.ClickHouse
	config.Redis
	config.Logging
}

const (
	// maxBodyBytes bounds every request body; larger bodies get 413.
	maxBodyBytes = 1 << 20
	// maxRoutes and maxDiffs bound the report's lists so a launch with
	// unbounded route or diff-path cardinality still yields a small answer.
	maxRoutes = 100
	maxDiffs  = 50
	// cacheKeyPrefix namespaces report cache keys; the version segment lets a
	// change of the cached shape never read an old value.
	cacheKeyPrefix = "darklaunch:reporter:report:v1:"
)
