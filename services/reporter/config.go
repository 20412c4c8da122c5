// Package reporter is the darklaunch HTTP API: launch control (create, list,
// patch, pause, resume, promote, roll back) over the NATS KV launch store,
// per-launch reports computed in ClickHouse and cached in Redis, and a small
// dashboard. Deploy tooling polls it, so the /v1 routes and their JSON are a
// contract documented in docs/api.md.
package reporter

import (
	"errors"
	"fmt"
	"time"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/netpolicy"
)

// Config is the reporter's settings, read from the environment.
type Config struct {
	Addr         string        `envconfig:"REPORTER_ADDR" default:":8090" desc:"listen address of the API (/v1), GET /healthz, GET /readyz and the dashboard (GET /)"`
	AdminAddr    string        `envconfig:"REPORTER_ADMIN_ADDR" default:":8091" desc:"listen address of the admin server: GET /metrics (Prometheus), GET /healthz (every dependency reachable) and GET /readyz (all but the Redis cache: the readiness probe)"`
	CacheTTL     time.Duration `envconfig:"REPORTER_CACHE_TTL" default:"2s" desc:"how long computed numbers are served as fresh, from memory or Redis; older ones are still served (stale) while one refresh runs; 0 disables the cache (concurrent polls are still collapsed)"`
	QueryTimeout time.Duration `envconfig:"REPORTER_QUERY_TIMEOUT" default:"10s" desc:"timeout of one report computation in ClickHouse and of one launch store operation"`
	// A path is noise for a route when most of its differences also show
	// between primary and secondary: see docs/api.md, "Noise".
	NoiseMinCount uint64  `envconfig:"REPORTER_NOISE_MIN_COUNT" default:"5" desc:"a route's path is suppressed as noise once at least this many of its differences also appeared between primary and secondary in the same request (0: the default 5)"`
	NoiseMinRatio float64 `envconfig:"REPORTER_NOISE_MIN_RATIO" default:"0.5" desc:"a route's path is suppressed as noise only when also at least this share (over 0, at most 1) of its differences, over the pairs the secondary answered, appeared between primary and secondary (0: the default 0.5)"`
	// The controller: see docs/api.md, "Ramps and the controller".
	ControlInterval time.Duration `envconfig:"REPORTER_CONTROL_INTERVAL" default:"2s" desc:"how often the ramp controller looks at the launches it drives (advance, stay, roll back, promote) and renews their leases; 0 disables the controller in this process"`
	LeaseTTL        time.Duration `envconfig:"REPORTER_LEASE_TTL" default:"10s" desc:"lifetime of a controller lease in the NATS KV bucket darklaunch_leases: when the reporter driving a launch dies, another takes over within this TTL plus one control interval; at least twice REPORTER_CONTROL_INTERVAL"`
	ID              string        `envconfig:"REPORTER_ID" default:"" desc:"this reporter's name in leases and audit entries (controller:<id>); empty: the host name and a random suffix"`
	// Authentication: see docs/api.md, "Authentication".
	TokensFile string `envconfig:"REPORTER_TOKENS_FILE" default:"" desc:"file of the API's bearer tokens, one 'NAME SCOPE TOKEN' per line (scope read, operate or admin; TOKEN in clear or sha256:<hex>; # comments); read at start. Required unless REPORTER_AUTH=off"`
	Auth       string `envconfig:"REPORTER_AUTH" default:"on" desc:"on: every /v1 request needs a token of REPORTER_TOKENS_FILE; off: no authentication, anyone who reaches REPORTER_ADDR controls the launches (logged and shown in /healthz as a warning; never in production)"`
	// Compaction and retention: see docs/clickhouse.md, "Aggregates".
	CompactInterval    time.Duration `envconfig:"REPORTER_COMPACT_INTERVAL" default:"5s" desc:"how often the reporter seals the launches' pairs into the one-minute aggregate tables reports read; 0 disables compaction in this process (reports stay exact, computed from the raw rows past the last seal)"`
	SealAfter          time.Duration `envconfig:"REPORTER_SEAL_AFTER" default:"10s" desc:"pairs are sealed once received this long ago (rows still on their way from the comparators); a row arriving later for a sealed minute makes it sealed again at the next compaction"`
	Retention          time.Duration `envconfig:"REPORTER_RETENTION" default:"0s" desc:"how long comparison rows and examples are kept: a month's partition is dropped once the whole month is older than this; 0 keeps them"`
	AggregateRetention time.Duration `envconfig:"REPORTER_AGGREGATE_RETENTION" default:"0s" desc:"the same for the aggregate tables (seals, pair_counts, diff_counts, latency_hist); 0 keeps them; when set, at least REPORTER_RETENTION (which must then be set)"`
	// AllowedTargets: see docs/api.md, "Targets".
	AllowedTargets string `envconfig:"REPORTER_ALLOWED_TARGETS" default:"" desc:"comma-separated targets a launch's shadow_url and secondary_url may name: host names, *.domain wildcards, CIDRs or IP addresses; empty: any target except link-local and cloud metadata addresses, which are always refused"`
	// Redis topologies beyond one server (redis.go): Cluster or Sentinel.
	RedisAddrs      string `envconfig:"REDIS_ADDRS" default:"" desc:"more Redis addresses, comma-separated host:port, beside REDIS_URL's host (which gives the scheme, credentials and database to all): a Redis Cluster's seed nodes, or with REDIS_MASTER_NAME the sentinels; empty: REDIS_URL's server only"`
	RedisMasterName string `envconfig:"REDIS_MASTER_NAME" default:"" desc:"Redis Sentinel: the master's name; REDIS_URL's host and REDIS_ADDRS are then the sentinels (asked without credentials), and the client follows the master they name through failovers"`
	RedisCluster    bool   `envconfig:"REDIS_CLUSTER" default:"false" desc:"REDIS_URL (with or without REDIS_ADDRS) is a Redis Cluster, even as one seed address; more than one address without REDIS_MASTER_NAME means a cluster too"`
	// allowed is AllowedTargets parsed (prepare).
	allowed *netpolicy.Policy
	config.NATS
	config.ClickHouse
	config.Redis
	config.Logging
	config.Profiling
}

// prepare gives the zero fields of a Config built in Go their default
// tags, except CacheTTL, ControlInterval and CompactInterval, whose zero
// means off; then it
// validates, and derives an empty ID.
func (c *Config) prepare() error {
	off := *c
	if err := config.Defaults(c); err != nil {
		return err
	}
	c.CacheTTL, c.ControlInterval, c.CompactInterval = off.CacheTTL, off.ControlInterval, off.CompactInterval
	if err := config.Validate(c); err != nil {
		return err
	}
	if c.ID == "" {
		c.ID = defaultID()
	}
	c.allowed, _ = netpolicy.Parse(c.AllowedTargets) // checked by Validate
	return nil
}

// Validate rejects settings the reporter cannot work with; config.Load
// calls it on the environment's settings, New on a Config built in Go.
func (c *Config) Validate() error {
	switch {
	case c.QueryTimeout <= 0:
		return fmt.Errorf("REPORTER_QUERY_TIMEOUT %s must be positive", c.QueryTimeout)
	case !(c.NoiseMinRatio > 0 && c.NoiseMinRatio <= 1):
		return fmt.Errorf("REPORTER_NOISE_MIN_RATIO %v must be over 0 and at most 1", c.NoiseMinRatio)
	case c.ControlInterval < 0:
		return fmt.Errorf("REPORTER_CONTROL_INTERVAL %s is negative", c.ControlInterval)
	case c.ControlInterval > 0 && c.LeaseTTL < 2*c.ControlInterval:
		return fmt.Errorf("REPORTER_LEASE_TTL %s must be at least twice REPORTER_CONTROL_INTERVAL %s, or a lease expires between two renewals", c.LeaseTTL, c.ControlInterval)
	case c.CacheTTL < 0:
		return fmt.Errorf("REPORTER_CACHE_TTL %s is negative", c.CacheTTL)
	case c.Auth != authOn && c.Auth != authOff:
		return fmt.Errorf("REPORTER_AUTH %q must be on or off", c.Auth)
	case c.Auth == authOn && c.TokensFile == "":
		return errors.New("REPORTER_TOKENS_FILE is not set: the API needs tokens (docs/api.md, Authentication); set REPORTER_AUTH=off to run without authentication, never in production")
	case c.Auth == authOff && c.TokensFile != "":
		return fmt.Errorf("REPORTER_AUTH=off and REPORTER_TOKENS_FILE %s are both set: choose one", c.TokensFile)
	case c.CompactInterval < 0 || c.SealAfter < 0:
		return fmt.Errorf("REPORTER_COMPACT_INTERVAL %s and REPORTER_SEAL_AFTER %s must not be negative", c.CompactInterval, c.SealAfter)
	case c.Retention < 0 || c.AggregateRetention < 0:
		return fmt.Errorf("REPORTER_RETENTION %s and REPORTER_AGGREGATE_RETENTION %s must not be negative", c.Retention, c.AggregateRetention)
	case c.AggregateRetention > 0 && (c.Retention == 0 || c.AggregateRetention < c.Retention):
		// Aggregates dropped while their raw rows stay would be sealed
		// again from them at every compaction.
		return fmt.Errorf("REPORTER_AGGREGATE_RETENTION %s must be at least REPORTER_RETENTION %s, which must then be set", c.AggregateRetention, c.Retention)
	}
	if _, err := redisOptions(*c); err != nil {
		return err
	}
	if _, err := netpolicy.Parse(c.AllowedTargets); err != nil {
		return fmt.Errorf("REPORTER_ALLOWED_TARGETS: %w", err)
	}
	return nil
}

const (
	// maxBodyBytes bounds every request body; larger bodies get 413.
	maxBodyBytes = 1 << 20
	// maxRoutes and maxDiffs bound the report's lists so a launch with
	// unbounded route or diff-path cardinality still yields a small answer.
	maxRoutes = 100
	maxDiffs  = 50
	// maxClasses bounds the report's diff classes; maxSuppressed the
	// suppressed paths (also the size of the array bound into the counting
	// queries).
	maxClasses    = 50
	maxSuppressed = 200
	// maxExamples bounds the examples endpoint's answer (the table keeps
	// analytics.ExampleSlots per class).
	maxExamples = 10
	// cacheKeyPrefix namespaces report cache keys; the version segment lets a
	// change of the cached shape never read an old value.
	cacheKeyPrefix = "darklaunch:reporter:report:v4:"
	// verdictKeyPrefix namespaces the cached numbers of verdict windows
	// (<prefix><launch id>:<window start in Unix µs>).
	verdictKeyPrefix = "darklaunch:reporter:verdict:v2:"
	// maxAudit bounds the audit entries a report shows.
	maxAudit = 100
)
