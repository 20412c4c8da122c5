package comparator

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/darklaunch/darklaunch/pkg/config"
)

// ErrConfig wraps every settings validation error.
var ErrConfig = errors.New("invalid comparator settings")

// Config is the comparator's settings, read from the environment.
type Config struct {
	config.NATS
	config.ClickHouse
	config.Logging
	config.Profiling

	AdminAddr     string        `envconfig:"COMPARATOR_ADMIN_ADDR" default:":8083" desc:"address for /healthz (checks NATS and ClickHouse) and /metrics"`
	BatchSize     int           `envconfig:"COMPARATOR_BATCH_SIZE" default:"10000" desc:"most pairs per ClickHouse insert (a batch is inserted when full or after COMPARATOR_FLUSH_INTERVAL, so below this many pairs/s a process inserts about once per interval: every insert costs ClickHouse a part per table and view to write and merge, and 1,000-row inserts cost it 4x the CPU per row of 10,000-row ones); also the most pairs this process holds unacknowledged"`
	BatchBytes    int           `envconfig:"COMPARATOR_BATCH_BYTES" default:"67108864" desc:"pair message bytes held per batch, bounding memory when bodies are large"`
	FlushInterval time.Duration `envconfig:"COMPARATOR_FLUSH_INTERVAL" default:"1s" desc:"longest a pair waits in a partial batch before the batch is inserted"`
	InsertTimeout time.Duration `envconfig:"COMPARATOR_INSERT_TIMEOUT" default:"10s" desc:"bound on one ClickHouse insert attempt"`
	RetryMax      time.Duration `envconfig:"COMPARATOR_RETRY_MAX" default:"5s" desc:"longest wait between retries of an insert, a fetch or the start-up connections"`
	// MaxAckPending is shared by every process on the durable consumer: it
	// must cover all their batches, or some processes starve.
	MaxAckPending   int           `envconfig:"COMPARATOR_MAX_ACK_PENDING" default:"0" desc:"pairs delivered but not yet acked across all comparator processes (0: 4 x COMPARATOR_BATCH_SIZE); keep it at least processes x batch size"`
	ShutdownTimeout time.Duration `envconfig:"COMPARATOR_SHUTDOWN_TIMEOUT" default:"10s" desc:"how long shutdown keeps trying to insert the last batch before leaving its pairs for redelivery"`
	FetchBatch      int           `envconfig:"COMPARATOR_FETCH_BATCH" default:"16" desc:"most deliveries (single pairs or pair batches) pulled ahead of the workers; when every worker stays busy they are taken out and kept alive"`
	Workers         int           `envconfig:"COMPARATOR_WORKERS" default:"0" desc:"deliveries compared at once (0: the number of CPUs); their rows go into one batch"`
	AckWait         time.Duration `envconfig:"COMPARATOR_ACK_WAIT" default:"5s" desc:"the consumer's ack deadline: a crashed comparator's pairs are redelivered this long after it last kept them alive (held pairs are kept alive every half of it, through slow inserts and ClickHouse outages too)"`
	MaxDiffs        int           `envconfig:"COMPARATOR_MAX_DIFFS" default:"100" desc:"differences recorded per pair; more are counted in compare_note"`
	MaxDepth        int           `envconfig:"COMPARATOR_MAX_DEPTH" default:"64" desc:"JSON nesting compared structurally; deeper levels are compared as text"`
	MaxBodyBytes    int           `envconfig:"COMPARATOR_MAX_BODY_BYTES" default:"8388608" desc:"bytes of each body compared after decoding its Content-Encoding (a cap against decompression bombs); beyond it the comparison is flagged truncated"`

	// ackWaitOverride lets tests use a short ack deadline, to prove held
	// pairs are kept alive through an outage longer than it.
	ackWaitOverride time.Duration
}

// DefaultConfig returns the settings with their documented defaults (the
// default tags), for callers that do not read the environment.
func DefaultConfig() Config { return config.Default[Config]() }

// Validate rejects settings the comparator cannot work with; config.Load
// calls it on the environment's settings, New on a Config built in Go.
func (c *Config) Validate() error {
	switch {
	case c.BatchSize < 1:
		return fmt.Errorf("%w: COMPARATOR_BATCH_SIZE must be at least 1, got %d", ErrConfig, c.BatchSize)
	case c.BatchBytes < 1<<20:
		return fmt.Errorf("%w: COMPARATOR_BATCH_BYTES must be at least 1 MiB, got %d", ErrConfig, c.BatchBytes)
	case c.FlushInterval <= 0:
		return fmt.Errorf("%w: COMPARATOR_FLUSH_INTERVAL must be positive, got %s", ErrConfig, c.FlushInterval)
	case c.InsertTimeout <= 0:
		return fmt.Errorf("%w: COMPARATOR_INSERT_TIMEOUT must be positive, got %s", ErrConfig, c.InsertTimeout)
	case c.RetryMax <= 0:
		return fmt.Errorf("%w: COMPARATOR_RETRY_MAX must be positive, got %s", ErrConfig, c.RetryMax)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("%w: COMPARATOR_SHUTDOWN_TIMEOUT must be positive, got %s", ErrConfig, c.ShutdownTimeout)
	case c.MaxAckPending != 0 && c.MaxAckPending < 2*c.BatchSize:
		return fmt.Errorf("%w: COMPARATOR_MAX_ACK_PENDING must be 0 or at least 2 x COMPARATOR_BATCH_SIZE (%d), got %d",
			ErrConfig, 2*c.BatchSize, c.MaxAckPending)
	case c.FetchBatch < 1:
		return fmt.Errorf("%w: COMPARATOR_FETCH_BATCH must be at least 1, got %d", ErrConfig, c.FetchBatch)
	case c.Workers < 0:
		return fmt.Errorf("%w: COMPARATOR_WORKERS must not be negative, got %d", ErrConfig, c.Workers)
	case c.AckWait < time.Second:
		return fmt.Errorf("%w: COMPARATOR_ACK_WAIT must be at least 1s, got %s", ErrConfig, c.AckWait)
	case c.MaxDiffs < 1 || c.MaxDepth < 1:
		return fmt.Errorf("%w: COMPARATOR_MAX_DIFFS and COMPARATOR_MAX_DEPTH must be at least 1", ErrConfig)
	case c.MaxBodyBytes < 1:
		return fmt.Errorf("%w: COMPARATOR_MAX_BODY_BYTES must be at least 1, got %d", ErrConfig, c.MaxBodyBytes)
	case c.NATSURL == "":
		return fmt.Errorf("%w: NATS_URL is required", ErrConfig)
	case c.ClickHouseAddr == "":
		return fmt.Errorf("%w: CLICKHOUSE_ADDR is required", ErrConfig)
	}
	return nil
}

// normalize gives the zero fields of a Config built in Go their defaults,
// validates it, and computes the derived values: MaxAckPending 0 is
// 4 x BatchSize, Workers 0 the number of CPUs.
func (c *Config) normalize() error {
	err := config.Prepare(c)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, 4*c.BatchSize)
	c.Workers = cmp.Or(c.Workers, runtime.GOMAXPROCS(0))
	return err
}

// ackWait is the consumer's redelivery deadline. It need not cover a
// batch's wait, insert or retries: the stage keeps held pairs alive
// (InProgress) until they are acked, so it only bounds how long a crashed
// comparator's pairs wait before another process gets them.
func (c *Config) ackWait() time.Duration {
	if c.ackWaitOverride > 0 {
		return c.ackWaitOverride
	}
	return c.AckWait
}
