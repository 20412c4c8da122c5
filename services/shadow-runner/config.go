package runner

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/netpolicy"
)

// ErrConfig wraps every settings validation error.
var ErrConfig = errors.New("invalid shadow-runner settings")

// Config is the runner's settings, read from the environment.
type Config struct {
	config.NATS
	config.Logging
	config.Profiling

	AdminAddr   string        `envconfig:"RUNNER_ADMIN_ADDR" default:":8082" desc:"address for /healthz and /metrics"`
	Concurrency int           `envconfig:"RUNNER_CONCURRENCY" default:"64" desc:"envelopes replayed at once in this process (each to its shadow and, when the launch has one, its secondary)"`
	Timeout     time.Duration `envconfig:"RUNNER_TIMEOUT" default:"10s" desc:"per-replay timeout, from sending the request to the end of the shadow's (or secondary's) body"`
	BodyLimit   int           `envconfig:"RUNNER_BODY_LIMIT" default:"1048576" desc:"bytes of the shadow's (and secondary's) response body kept in a pair (the full size is still recorded)"`
	FetchBatch  int           `envconfig:"RUNNER_FETCH_BATCH" default:"8" desc:"most deliveries (single envelopes or envelope batches) pulled ahead of the replays; when every slot stays busy they are taken out and kept alive"`
	AckWait     time.Duration `envconfig:"RUNNER_ACK_WAIT" default:"5s" desc:"the consumer's ack deadline: a crashed runner's envelopes are redelivered this long after it last kept them alive (held envelopes are kept alive every half of it, however long their replay takes)"`
	ID          string        `envconfig:"RUNNER_ID" desc:"runner id written into each pair (default hostname-pid)"`
	// MaxAckPending is shared by every process on the durable consumer, so
	// it bounds the whole fleet's in-flight envelopes, not this process's.
	MaxAckPending int `envconfig:"RUNNER_MAX_ACK_PENDING" default:"0" desc:"envelopes delivered but not yet acked across all runners (0: 8 x RUNNER_CONCURRENCY)"`
	MaxDeliver    int `envconfig:"RUNNER_MAX_DELIVER" default:"20" desc:"deliveries of one envelope before it is dead-lettered instead of retried"`

	// A launch's max_rps is split among the runners alive in the
	// darklaunch_runners bucket; these set how fast that count follows.
	HeartbeatInterval time.Duration `envconfig:"RUNNER_HEARTBEAT_INTERVAL" default:"5s" desc:"how often this runner refreshes its key in the darklaunch_runners KV bucket and re-lists the live runners that share each launch's max_rps"`
	HeartbeatTTL      time.Duration `envconfig:"RUNNER_HEARTBEAT_TTL" default:"15s" desc:"max age of the darklaunch_runners keys: a runner that stops without deleting its key stops counting after this; set on the bucket by every runner at start, so keep it the same on all (at least 2 x RUNNER_HEARTBEAT_INTERVAL)"`

	MaxIdleConnsPerHost int           `envconfig:"RUNNER_MAX_IDLE_CONNS_PER_HOST" default:"64" desc:"idle keep-alive connections kept per shadow host"`
	MaxConnsPerHost     int           `envconfig:"RUNNER_MAX_CONNS_PER_HOST" default:"0" desc:"connections per shadow host, 0 for no limit beyond RUNNER_CONCURRENCY"`
	IdleConnTimeout     time.Duration `envconfig:"RUNNER_IDLE_CONN_TIMEOUT" default:"90s" desc:"how long an idle shadow connection is kept"`
	DialTimeout         time.Duration `envconfig:"RUNNER_DIAL_TIMEOUT" default:"5s" desc:"TCP connect timeout to a shadow (RUNNER_TIMEOUT still bounds the whole replay)"`

	// AllowedTargets is the runner's target policy (pkg/netpolicy),
	// applied to every replay's URL and again to every address it dials.
	AllowedTargets string `envconfig:"RUNNER_ALLOWED_TARGETS" default:"" desc:"comma-separated targets replays may be sent to: host names, *.domain wildcards, CIDRs or IP addresses; empty: any target except link-local and cloud metadata addresses, which are always refused, also when a name resolves to one at dial time"`

	SealKeyFile string `envconfig:"RUNNER_SEAL_KEY_FILE" desc:"the taps' seal key file (docs/envelope.md): opens sealed header values before a replay (an envelope it cannot open is dead-lettered as unsealable), seals the shadow's sensitive response headers in pairs, and proves replays to taps (X-Darklaunch-Replay); without it, sensitive response headers are left out of pairs"`

	// targets is AllowedTargets parsed (normalize).
	targets *netpolicy.Policy
	// resolver, when set, is the replay dialer's resolver (tests: a name
	// that resolves to a refused address only when dialled).
	resolver *net.Resolver

	// ackWaitOverride lets tests use a short ack deadline (the conformance
	// suite's redelivery after a crash).
	ackWaitOverride time.Duration
}

// DefaultConfig returns the settings with their documented defaults (the
// default tags), for callers that do not read the environment.
func DefaultConfig() Config { return config.Default[Config]() }

// Validate rejects settings the runner cannot work with; config.Load calls
// it on the environment's settings, New on a Config built in Go.
func (c *Config) Validate() error {
	switch {
	case c.NATSURL == "":
		return fmt.Errorf("%w: NATS_URL is required", ErrConfig)
	case c.Concurrency < 1:
		return fmt.Errorf("%w: RUNNER_CONCURRENCY must be at least 1, got %d", ErrConfig, c.Concurrency)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: RUNNER_TIMEOUT must be positive, got %s", ErrConfig, c.Timeout)
	case c.BodyLimit < 0:
		return fmt.Errorf("%w: RUNNER_BODY_LIMIT must not be negative, got %d", ErrConfig, c.BodyLimit)
	case c.AckWait < time.Second:
		return fmt.Errorf("%w: RUNNER_ACK_WAIT must be at least 1s, got %s", ErrConfig, c.AckWait)
	case c.FetchBatch < 1:
		return fmt.Errorf("%w: RUNNER_FETCH_BATCH must be at least 1, got %d", ErrConfig, c.FetchBatch)
	case c.MaxAckPending < 0:
		return fmt.Errorf("%w: RUNNER_MAX_ACK_PENDING must not be negative, got %d", ErrConfig, c.MaxAckPending)
	case c.MaxDeliver < 1:
		return fmt.Errorf("%w: RUNNER_MAX_DELIVER must be at least 1, got %d", ErrConfig, c.MaxDeliver)
	case c.MaxIdleConnsPerHost < 0 || c.MaxConnsPerHost < 0:
		return fmt.Errorf("%w: connection limits must not be negative", ErrConfig)
	case c.IdleConnTimeout < 0 || c.DialTimeout < 0:
		return fmt.Errorf("%w: RUNNER_IDLE_CONN_TIMEOUT and RUNNER_DIAL_TIMEOUT must not be negative", ErrConfig)
	case c.HeartbeatInterval < 0 || c.HeartbeatTTL < 0:
		return fmt.Errorf("%w: RUNNER_HEARTBEAT_INTERVAL and RUNNER_HEARTBEAT_TTL must not be negative", ErrConfig)
	case c.HeartbeatTTL < 2*c.HeartbeatInterval:
		return fmt.Errorf("%w: RUNNER_HEARTBEAT_TTL (%s) must be at least 2 x RUNNER_HEARTBEAT_INTERVAL (%s), or a live runner's key can expire between two heartbeats",
			ErrConfig, c.HeartbeatTTL, c.HeartbeatInterval)
	}
	if _, err := netpolicy.Parse(c.AllowedTargets); err != nil {
		return fmt.Errorf("%w: RUNNER_ALLOWED_TARGETS: %w", ErrConfig, err)
	}
	_, err := c.loadKeys()
	return err
}

// normalize gives the zero fields of a Config built in Go their defaults,
// validates it, and computes the derived values: MaxAckPending 0 is
// 8 x Concurrency, an empty ID is hostname-pid.
func (c *Config) normalize() error {
	if err := config.Prepare(c); err != nil {
		return err
	}
	c.MaxAckPending = cmp.Or(c.MaxAckPending, 8*c.Concurrency)
	c.targets, _ = netpolicy.Parse(c.AllowedTargets) // checked by Validate
	if c.ID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "runner"
		}
		c.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return nil
}

// ackWait is the consumer's ack deadline. It need not cover a replay: the
// stage keeps a held delivery alive (InProgress) while it is replayed and
// published, so it only bounds how long a crashed runner's envelopes wait
// before another runner gets them.
func (c *Config) ackWait() time.Duration {
	if c.ackWaitOverride > 0 {
		return c.ackWaitOverride
	}
	return c.AckWait
}

// pubWindow bounds the pair publishes awaiting their ack in the process:
// a few per delivery being handled.
func (c *Config) pubWindow() int { return 4 * c.Concurrency }
