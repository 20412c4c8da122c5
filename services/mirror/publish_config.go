package mirror

import (
	"fmt"

	"github.com/darklaunch/darklaunch/pkg/stream"
)

// validatePublisher checks the publisher's settings (part of Validate).
func (c *Config) validatePublisher() error {
	switch {
	case c.QueueSize < 1:
		return fmt.Errorf("%w: MIRROR_QUEUE_SIZE %d must be at least 1", ErrConfig, c.QueueSize)
	case c.QueueMaxBytes < 1:
		return fmt.Errorf("%w: MIRROR_QUEUE_MAX_BYTES %d must be at least 1", ErrConfig, c.QueueMaxBytes)
	case c.Publishers < 1:
		return fmt.Errorf("%w: MIRROR_PUBLISHERS %d must be at least 1", ErrConfig, c.Publishers)
	case c.MaxPending < 1:
		return fmt.Errorf("%w: MIRROR_MAX_PENDING_ACKS %d must be at least 1", ErrConfig, c.MaxPending)
	case c.BatchMaxEnvelopes < 1:
		return fmt.Errorf("%w: MIRROR_BATCH_MAX_ENVELOPES %d must be at least 1", ErrConfig, c.BatchMaxEnvelopes)
	case c.BatchMaxBytes < 1:
		return fmt.Errorf("%w: MIRROR_BATCH_MAX_BYTES %d must be at least 1", ErrConfig, c.BatchMaxBytes)
	case c.BatchMaxDelay <= 0:
		return fmt.Errorf("%w: MIRROR_BATCH_MAX_DELAY %s must be positive", ErrConfig, c.BatchMaxDelay)
	case c.AckTimeout <= 0:
		return fmt.Errorf("%w: MIRROR_ACK_TIMEOUT %s must be positive", ErrConfig, c.AckTimeout)
	case c.PublishRetryFor < 0:
		return fmt.Errorf("%w: MIRROR_PUBLISH_RETRY_FOR %s must not be negative", ErrConfig, c.PublishRetryFor)
	case c.PublishRetryFor+c.AckTimeout >= stream.DuplicateWindow:
		// A retry after the stream forgot the first attempt's id could
		// store the envelopes twice.
		return fmt.Errorf("%w: MIRROR_PUBLISH_RETRY_FOR %s plus MIRROR_ACK_TIMEOUT %s must stay under the streams' duplicate window (%s)",
			ErrConfig, c.PublishRetryFor, c.AckTimeout, stream.DuplicateWindow)
	}
	return nil
}
