package mirror

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
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

	BodyLimit     int   `envconfig:"MIRROR_BODY_LIMIT" default:"1048576" desc:"bytes of each request and response body captured per envelope; the rest is counted, not kept"`
	QueueSize     int   `envconfig:"MIRROR_QUEUE_SIZE" default:"10000" desc:"envelopes waiting to be published; when full, new envelopes are dropped (the request is never delayed)"`
	QueueMaxBytes int64 `envconfig:"MIRROR_QUEUE_MAX_BYTES" default:"268435456" desc:"captured body bytes the queue may hold; beyond this envelopes are dropped as queue_full"`
	Publishers    int   `envconfig:"MIRROR_PUBLISHERS" default:"2" desc:"goroutines encoding and publishing envelopes"`
	MaxPending    int   `envconfig:"MIRROR_MAX_PENDING_ACKS" default:"1024" desc:"published envelopes awaiting a JetStream ack before publishing stalls"`

	AckTimeout   time.Duration `envconfig:"MIRROR_ACK_TIMEOUT" default:"10s" desc:"how long to wait for a JetStream ack before counting a publish as failed"`
	DrainTimeout time.Duration `envconfig:"MIRROR_DRAIN_TIMEOUT" default:"5s" desc:"on shutdown, how long to keep publishing queued envelopes and waiting for acks"`

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

	config.NATS
	config.Logging
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
	switch {
	case c.BodyLimit < 0:
		return nil, fmt.Errorf("%w: MIRROR_BODY_LIMIT %d must not be negative", ErrConfig, c.BodyLimit)
	case c.QueueSize < 1:
		return nil, fmt.Errorf("%w: MIRROR_QUEUE_SIZE %d must be at least 1", ErrConfig, c.QueueSize)
	case c.QueueMaxBytes < 1:
		return nil, fmt.Errorf("%w: MIRROR_QUEUE_MAX_BYTES %d must be at least 1", ErrConfig, c.QueueMaxBytes)
	case c.Publishers < 1:
		return nil, fmt.Errorf("%w: MIRROR_PUBLISHERS %d must be at least 1", ErrConfig, c.Publishers)
	case c.MaxPending < 1:
		return nil, fmt.Errorf("%w: MIRROR_MAX_PENDING_ACKS %d must be at least 1", ErrConfig, c.MaxPending)
	case c.MaxIdleConnsPerHost < 1:
		return nil, fmt.Errorf("%w: MIRROR_MAX_IDLE_CONNS_PER_HOST %d must be at least 1", ErrConfig, c.MaxIdleConnsPerHost)
	case c.LiveReportInterval < 0:
		return nil, fmt.Errorf("%w: MIRROR_LIVE_REPORT_INTERVAL must not be negative", ErrConfig)
	case c.ResponseHeaderTimeout < 0:
		return nil, fmt.Errorf("%w: MIRROR_RESPONSE_HEADER_TIMEOUT must not be negative", ErrConfig)
	case c.BodyReadTimeout < 0:
		return nil, fmt.Errorf("%w: MIRROR_BODY_READ_TIMEOUT must not be negative", ErrConfig)
	}
	if _, err := parseProxies(c.TrustedProxies); err != nil {
		return nil, err
	}
	if _, err := c.sealing(); err != nil {
		return nil, err
	}
	return u, nil
}
