package mirror

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/pkg/config"
)

// Config is the mirror's settings, read from the environment by
// config.Load. A Go caller may leave any field but PrimaryURL at its zero
// value: New fills the same defaults as the environment would.
type Config struct {
	PrimaryURL string `envconfig:"MIRROR_PRIMARY_URL" required:"true" desc:"base URL of the primary every request is served by (http:// or https://, a path is kept as prefix)"`
	Addr       string `envconfig:"MIRROR_ADDR" default:":8080" desc:"address the proxy listens on"`
	AdminAddr  string `envconfig:"MIRROR_ADMIN_ADDR" default:":8081" desc:"address serving /healthz, /livez and /metrics"`
	Service    string `envconfig:"MIRROR_SERVICE" default:"default" desc:"service name: launches with this service are mirrored by this tap"`
	TapID      string `envconfig:"MIRROR_TAP_ID" desc:"tap id written in every envelope (default: hostname-pid)"`

	BodyLimit int `envconfig:"MIRROR_BODY_LIMIT" default:"1048576" desc:"bytes of each request and response body captured per envelope; the rest is counted, not kept"`
	// The publisher (publish.go): its budget, batches and retries.
	QueueSize         int           `envconfig:"MIRROR_QUEUE_SIZE" default:"8192" desc:"envelopes the publisher may hold (queued, in a batch, awaiting an ack or a retry); beyond this new envelopes are dropped as queue_full (the request is never delayed)"`
	QueueMaxBytes     int64         `envconfig:"MIRROR_QUEUE_MAX_BYTES" default:"33554432" desc:"bytes the publisher may hold (captured bodies and headers, then encoded batches); beyond this new envelopes are dropped as queue_full"`
	Publishers        int           `envconfig:"MIRROR_PUBLISHERS" default:"2" desc:"goroutines sealing, batching and publishing envelopes"`
	MaxPending        int           `envconfig:"MIRROR_MAX_PENDING_ACKS" default:"256" desc:"NATS messages (batches) published and awaiting a JetStream ack before publishing stalls"`
	BatchMaxEnvelopes int           `envconfig:"MIRROR_BATCH_MAX_ENVELOPES" default:"256" desc:"envelopes of one launch packed in one NATS message (a batch, docs/envelope.md); 1 publishes single v1 JSON envelopes instead, for runners that do not read batches"`
	BatchMaxBytes     int           `envconfig:"MIRROR_BATCH_MAX_BYTES" default:"524288" desc:"a batch is sent once it holds about this many bytes (it never exceeds the NATS server's max payload)"`
	BatchMaxDelay     time.Duration `envconfig:"MIRROR_BATCH_MAX_DELAY" default:"50ms" desc:"a batch is sent at the latest this long after its first envelope (the pipeline's cost is mostly per NATS message, in NATS and in the runner: 50 ms instead of 5 ms makes batches about 10x fuller at a few thousand samples/s, for a delay nobody sees in a comparison)"`
	PublishRetryFor   time.Duration `envconfig:"MIRROR_PUBLISH_RETRY_FOR" default:"30s" desc:"how long a batch that failed to publish (NATS away, a stream leader election, a lost ack) is retried under the same Nats-Msg-Id before it is dropped as nats_error; with MIRROR_ACK_TIMEOUT, under the stream's 10m duplicate window"`
	AckTimeout        time.Duration `envconfig:"MIRROR_ACK_TIMEOUT" default:"5s" desc:"how long to wait for a JetStream ack before the publish is retried"`

	DrainTimeout time.Duration `envconfig:"MIRROR_DRAIN_TIMEOUT" default:"5s" desc:"on shutdown, how long to keep publishing queued envelopes, retrying and waiting for acks; what is left is dropped as shutdown"`

	LiveReportInterval time.Duration `envconfig:"MIRROR_LIVE_REPORT_INTERVAL" default:"2s" desc:"how often the live launch's counters (requests, errors, latency per version) are written to the KV bucket darklaunch_live for the promotion gates, and the loss accounting's counts to darklaunch_accounting; also once at shutdown"`

	RewriteHost bool `envconfig:"MIRROR_REWRITE_HOST" default:"false" desc:"send the primary URL's host as Host instead of the client's Host"`
	XForwarded  bool `envconfig:"MIRROR_X_FORWARDED" default:"false" desc:"append the client address to X-Forwarded-For and set X-Forwarded-Host/Proto (off: the primary sees the forwarding headers a trusted proxy sent)"`
	// TrustedProxies are the peers whose forwarding headers are believed.
	TrustedProxies []string `envconfig:"MIRROR_TRUSTED_PROXIES" desc:"comma-separated addresses or CIDRs (10.0.0.0/8) of load balancers in front of the tap: only their Forwarded and X-Forwarded-* headers reach the primary and the envelopes; from any other peer these headers are removed (empty: trust no peer)"`

	// Seal, SealKeyFile and SealHeaders protect credentials in envelopes
	// (seal.go); the key file also authenticates replays (replay.go).
	Seal        string   `envconfig:"MIRROR_SEAL" default:"auto" desc:"sensitive header values in envelopes: auto (sealed when MIRROR_SEAL_KEY_FILE is set, otherwise left out of envelopes), on (sealed; MIRROR_SEAL_KEY_FILE required), off (captured in clear)"`
	SealKeyFile string   `envconfig:"MIRROR_SEAL_KEY_FILE" desc:"key file shared with the shadow-runners (format: docs/envelope.md): sensitive header values are sealed with its current key (AES-256-GCM) and replayed requests are verified with its keys"`
	SealHeaders []string `envconfig:"MIRROR_SEAL_HEADERS" default:"Authorization,Proxy-Authorization,Cookie,Set-Cookie,X-Api-Key" desc:"comma-separated headers (request and primary response) whose values are sealed, or left out without a key"`

	MaxIdleConnsPerHost   int           `envconfig:"MIRROR_MAX_IDLE_CONNS_PER_HOST" default:"256" desc:"idle keep-alive connections kept to the primary"`
	DialTimeout           time.Duration `envconfig:"MIRROR_DIAL_TIMEOUT" default:"5s" desc:"timeout for connecting to the primary"`
	ResponseHeaderTimeout time.Duration `envconfig:"MIRROR_RESPONSE_HEADER_TIMEOUT" default:"60s" desc:"timeout for the primary's (and a live new version's) response headers, from the end of the request; the client then gets a 504"`
	IdleConnTimeout       time.Duration `envconfig:"MIRROR_IDLE_CONN_TIMEOUT" default:"90s" desc:"how long an idle connection to the primary is kept"`
	ReadHeaderTimeout     time.Duration `envconfig:"MIRROR_READ_HEADER_TIMEOUT" default:"10s" desc:"timeout for reading a client's request headers"`
	BodyReadTimeout       time.Duration `envconfig:"MIRROR_BODY_READ_TIMEOUT" default:"60s" desc:"a client's whole request, body included, must arrive within this from its first byte; a slower upload is cut off"`
	ClientIdleTimeout     time.Duration `envconfig:"MIRROR_CLIENT_IDLE_TIMEOUT" default:"120s" desc:"how long an idle client keep-alive connection is kept"`
	ShutdownTimeout       time.Duration `envconfig:"MIRROR_SHUTDOWN_TIMEOUT" default:"15s" desc:"on shutdown, how long in-flight requests may take before connections are closed"`

	// The Go runtime's settings for the mirror binary (NewProcess applies
	// them; New, which embeds the tap in another program, leaves the
	// runtime alone).
	GOGC        string `envconfig:"MIRROR_GOGC" default:"400" desc:"garbage collector target percentage of the mirror binary, as GOGC: a number, or off (a proxy allocates per request and keeps little: collecting at 5x the live heap costs a quarter of the GC work of Go's 100); the GOGC environment variable, when set, wins"`
	MemoryLimit string `envconfig:"MIRROR_MEMORY_LIMIT" default:"96MiB" desc:"soft memory limit of the mirror binary, as GOMEMLIMIT: bytes with an optional unit (B, KiB, MiB, GiB), or off; near it the collector runs harder whatever MIRROR_GOGC says and gives memory back to the system; the GOMEMLIMIT environment variable, when set, wins"`

	config.NATS
	config.Logging
	config.Profiling
}

// ErrConfig wraps every settings error New reports.
var ErrConfig = errors.New("invalid mirror settings")

// withDefaults returns c with its zero fields at their default tags
// (config.Defaults: the one place a default is written), so a Config built
// in Go behaves like one read from an empty environment, and an empty
// TapID derived from the host: hostname-pid.
func (c Config) withDefaults() Config {
	_ = config.Defaults(&c) // the tags parse: TestEnvironmentDefaultsMatchGoDefaults
	if c.TapID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "mirror"
		}
		c.TapID = host + "-" + strconv.Itoa(os.Getpid())
	}
	return c
}

// Validate checks the settings that would make the tap misbehave;
// config.Load calls it on the environment's settings, New on a Config
// built in Go.
func (c *Config) Validate() error {
	_, err := c.primary()
	return err
}

// primary validates the settings and returns the parsed primary URL.
func (c *Config) primary() (*url.URL, error) {
	if c.PrimaryURL == "" {
		return nil, fmt.Errorf("%w: MIRROR_PRIMARY_URL is required", ErrConfig)
	}
	u, err := url.Parse(c.PrimaryURL)
	if err != nil {
		return nil, fmt.Errorf("%w: MIRROR_PRIMARY_URL %q does not parse: %v", ErrConfig, c.PrimaryURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: MIRROR_PRIMARY_URL %q must be an absolute http:// or https:// URL", ErrConfig, c.PrimaryURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: MIRROR_PRIMARY_URL %q must not carry a query or fragment", ErrConfig, c.PrimaryURL)
	}
	if err := c.Profiling.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch {
	case c.BodyLimit < 0:
		return nil, fmt.Errorf("%w: MIRROR_BODY_LIMIT %d must not be negative", ErrConfig, c.BodyLimit)
	case c.MaxIdleConnsPerHost < 1:
		return nil, fmt.Errorf("%w: MIRROR_MAX_IDLE_CONNS_PER_HOST %d must be at least 1", ErrConfig, c.MaxIdleConnsPerHost)
	case c.LiveReportInterval < 0:
		return nil, fmt.Errorf("%w: MIRROR_LIVE_REPORT_INTERVAL must not be negative", ErrConfig)
	case c.ResponseHeaderTimeout < 0:
		return nil, fmt.Errorf("%w: MIRROR_RESPONSE_HEADER_TIMEOUT must not be negative", ErrConfig)
	case c.BodyReadTimeout < 0:
		return nil, fmt.Errorf("%w: MIRROR_BODY_READ_TIMEOUT must not be negative", ErrConfig)
	}
	_, limit, err := c.runtimeSettings()
	if err != nil {
		return nil, err
	}
	if limit > 0 && c.QueueMaxBytes > limit/2 {
		// A queue as large as the limit would keep the collector running
		// flat out while NATS is slow, and still not fit.
		return nil, fmt.Errorf("%w: MIRROR_QUEUE_MAX_BYTES %d must be at most half of MIRROR_MEMORY_LIMIT %s: raise the limit with the queue (or turn it off)",
			ErrConfig, c.QueueMaxBytes, c.MemoryLimit)
	}
	if err := c.validatePublisher(); err != nil {
		return nil, err
	}
	if _, err := parseProxies(c.TrustedProxies); err != nil {
		return nil, err
	}
	if _, err := c.sealing(); err != nil {
		return nil, err
	}
	return u, nil
}

// runtimeSettings parses MIRROR_GOGC and MIRROR_MEMORY_LIMIT: the GC
// percentage (-1: off) and the memory limit in bytes (0: none).
func (c *Config) runtimeSettings() (gogc int, limit int64, err error) {
	gogc = -1
	if c.GOGC != "off" {
		if gogc, err = strconv.Atoi(c.GOGC); err != nil || gogc < 0 {
			return 0, 0, fmt.Errorf("%w: MIRROR_GOGC %q must be a percentage (400) or off", ErrConfig, c.GOGC)
		}
	}
	if c.MemoryLimit == "off" {
		return gogc, 0, nil
	}
	num := strings.TrimRight(c.MemoryLimit, "KMGTiB")
	unit := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[c.MemoryLimit[len(num):]]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || unit == 0 || n > math.MaxInt64/unit {
		return 0, 0, fmt.Errorf("%w: MIRROR_MEMORY_LIMIT %q must be a positive size in bytes, with an optional unit (96MiB), or off", ErrConfig, c.MemoryLimit)
	}
	return gogc, n * unit, nil
}

// NewProcess is New for the mirror binary: it first applies the runtime
// settings (MIRROR_GOGC, MIRROR_MEMORY_LIMIT) to the whole process, except
// that the Go runtime's own GOGC or GOMEMLIMIT variable, when set, wins.
// New alone leaves the runtime as it is, for a program embedding the tap.
func NewProcess(cfg Config, log *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	if _, err := cfg.primary(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gogc, limit, _ := cfg.runtimeSettings() // validated by primary
	gogcFrom, limitFrom := "GOGC", "GOMEMLIMIT"
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gogc)
		gogcFrom = "MIRROR_GOGC"
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if limit == 0 {
			limit = math.MaxInt64 // the runtime's "no limit"
		}
		debug.SetMemoryLimit(limit)
		limitFrom = "MIRROR_MEMORY_LIMIT"
	}
	log.Info("Go runtime settings", "gogc_from", gogcFrom, "memory_limit_bytes", debug.SetMemoryLimit(-1), "memory_limit_from", limitFrom)
	s, err := New(cfg, log)
	if err != nil {
		return nil, err
	}
	s.returnMemory = true
	return s, nil
}
