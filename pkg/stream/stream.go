// Package stream names the JetStream streams, subjects and consumers that
// connect the darklaunch services, and creates them. Every service calls
// Ensure at start, so they can start in any order.
//
//	subject                              stream                 written by      read by
//	darklaunch.envelopes.<launch_id>     DARKLAUNCH_ENVELOPES   mirror          shadow-runner (durable "shadow-runner")
//	darklaunch.pairs.<launch_id>         DARKLAUNCH_PAIRS       shadow-runner   comparator (durable "comparator")
//	darklaunch.deadletter.<stage>        DARKLAUNCH_DEADLETTER  runner, comparator  people
//
// Messages carry their envelope id as Nats-Msg-Id, so a message published
// twice within the duplicate window is stored once.
//
// Every stream and KV bucket darklaunch creates has the replicas of the
// JetStream context it is created through: JetStream makes a context that
// carries NATS_REPLICAS, and Ensure, EnsureConsumer, OpenKV (and the
// buckets of pkg/launch, pkg/live and the reporter) read it with Replicas.
// An existing stream or bucket with other replicas is scaled to them.
package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	EnvelopesStream  = "DARKLAUNCH_ENVELOPES"
	PairsStream      = "DARKLAUNCH_PAIRS"
	DeadLetterStream = "DARKLAUNCH_DEADLETTER"

	EnvelopesPrefix  = "darklaunch.envelopes."
	PairsPrefix      = "darklaunch.pairs."
	DeadLetterPrefix = "darklaunch.deadletter."

	// RunnerConsumer and ComparatorConsumer are the durable consumer names
	// shared by every process of a service.
	RunnerConsumer     = "shadow-runner"
	ComparatorConsumer = "comparator"

	// HeaderReason is set on dead-lettered messages: why it was rejected.
	HeaderReason = "Darklaunch-Reason"
	// HeaderSubject is set on dead-lettered messages: where it came from.
	HeaderSubject = "Darklaunch-Original-Subject"

	// DuplicateWindow is how long a stream remembers message ids.
	DuplicateWindow = 10 * time.Minute
)

// EnvelopeSubject is the subject a tap publishes a launch's envelopes on.
func EnvelopeSubject(launchID string) string { return EnvelopesPrefix + launchID }

// PairSubject is the subject a runner publishes a launch's pairs on.
func PairSubject(launchID string) string { return PairsPrefix + launchID }

// DeadLetterSubject is the subject for messages a stage could not process.
func DeadLetterSubject(stage string) string { return DeadLetterPrefix + stage }

// Limits bound what the streams keep on disk; they are work queues, so
// acknowledged messages are removed at once.
type Limits struct {
	MaxAge   time.Duration
	MaxBytes int64
}

// DefaultLimits keep a day or 10 GiB of unprocessed messages per stream
// (the defaults of NATS_STREAM_MAX_AGE and NATS_STREAM_MAX_BYTES).
var DefaultLimits = Limits{MaxAge: 24 * time.Hour, MaxBytes: 10 << 30}

// JetStream is jetstream.New(nc, opts...) carrying what the streams and
// buckets created through it get from the shared NATS settings: the
// replicas (NATS_REPLICAS) and the streams' limits (NATS_STREAM_MAX_BYTES,
// NATS_STREAM_MAX_AGE; zero ones are DefaultLimits').
func JetStream(nc *nats.Conn, cfg config.NATS, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		return nil, err
	}
	lim := Limits{MaxAge: cmp.Or(cfg.NATSStreamMaxAge, DefaultLimits.MaxAge), MaxBytes: cmp.Or(cfg.NATSStreamMaxBytes, DefaultLimits.MaxBytes)}
	return WithLimits(WithReplicas(js, cfg.NATSReplicas), lim), nil
}

// WithReplicas returns js carrying replicas (see JetStream).
func WithReplicas(js jetstream.JetStream, replicas int) jetstream.JetStream {
	c := settingsOf(js)
	c.replicas = replicas
	return c
}

// WithLimits returns js carrying the streams' limits (see JetStream).
func WithLimits(js jetstream.JetStream, lim Limits) jetstream.JetStream {
	c := settingsOf(js)
	c.limits = lim
	return c
}

func settingsOf(js jetstream.JetStream) configured {
	if r, ok := js.(configured); ok {
		return r
	}
	return configured{JetStream: js}
}

// configured is a JetStream context with the replicas of what it creates
// and the streams' limits.
type configured struct {
	jetstream.JetStream
	replicas int
	limits   Limits
}

// StreamLimits are the limits of the streams created through js: what
// JetStream or WithLimits gave it, else DefaultLimits.
func StreamLimits(js jetstream.JetStream) Limits {
	if r, ok := js.(configured); ok && r.limits.MaxBytes > 0 && r.limits.MaxAge > 0 {
		return r.limits
	}
	return DefaultLimits
}

// Replicas is the number of replicas of the streams and buckets created
// through js: what JetStream or WithReplicas gave it, else 1.
func Replicas(js jetstream.JetStream) int {
	if r, ok := js.(configured); ok && r.replicas > 0 {
		return r.replicas
	}
	return 1
}

// ErrStorage wraps a stream JetStream refused for want of storage to
// reserve its MaxBytes on.
var ErrStorage = errors.New("not enough JetStream storage for darklaunch's streams: give the NATS servers more (max_file_store), or lower NATS_STREAM_MAX_BYTES on every service")

// errInsufficientStorage is JetStream's "insufficient storage resources
// available" (JSStorageResourcesExceededErr).
var errInsufficientStorage = &jetstream.APIError{ErrorCode: 10047}

// Ensure creates or updates the three streams, with Replicas(js) replicas
// and StreamLimits(js): an existing stream with other replicas is scaled
// (JetStream moves its data to the new peers, and the stream stays
// available meanwhile), one with other limits gets these.
func Ensure(ctx context.Context, js jetstream.JetStream) error {
	lim := StreamLimits(js)
	for _, cfg := range []jetstream.StreamConfig{
		{Name: EnvelopesStream, Subjects: []string{EnvelopesPrefix + ">"}, Retention: jetstream.WorkQueuePolicy,
			Description: "sampled requests with the primary's response, waiting for replay"},
		{Name: PairsStream, Subjects: []string{PairsPrefix + ">"}, Retention: jetstream.WorkQueuePolicy,
			Description: "envelopes with the shadow's response, waiting for comparison"},
		{Name: DeadLetterStream, Subjects: []string{DeadLetterPrefix + ">"}, Retention: jetstream.LimitsPolicy,
			Description: "messages a stage could not process, with the reason in the Darklaunch-Reason header"},
	} {
		cfg.Storage = jetstream.FileStorage
		cfg.Duplicates = DuplicateWindow
		cfg.MaxAge = lim.MaxAge
		cfg.MaxBytes = lim.MaxBytes
		cfg.Discard = jetstream.DiscardOld
		cfg.Replicas = Replicas(js)
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			if errors.Is(err, errInsufficientStorage) {
				return fmt.Errorf("create stream %s (%d replicas of %d bytes): %w: %w", cfg.Name, cfg.Replicas, cfg.MaxBytes, ErrStorage, err)
			}
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// EnsureConsumer creates or updates a durable consumer on one of the
// streams. If the stream is gone (someone removed it after Ensure), the
// streams are created again with js's limits and replicas first.
// The consumer has the replicas of its stream.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if err := Ensure(ctx, js); err != nil {
			return nil, err
		}
		c, err = js.CreateOrUpdateConsumer(ctx, stream, cfg)
	}
	return c, err
}

// Connect connects to NATS at cfg.NATSURL so that the connection never
// gives up: it reconnects forever and buffers nothing while disconnected
// (publishers handle the failure themselves). It authenticates and
// secures the connection as cfg says (Security). With a non-nil log,
// disconnects and reconnects are logged; opts come after these defaults,
// so a caller's own handlers replace them.
//
// cfg.NATSURL may list several servers, comma separated (a cluster): the
// client connects to any of them, learns the others from the cluster, and
// reconnects to another when its server goes; credentials and TLS apply to
// each.
func Connect(cfg config.NATS, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	sec, err := Security(cfg)
	if err != nil {
		return nil, err
	}
	url := cfg.NATSURL
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1),
	}
	if log != nil {
		base = append(base,
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil { // nil on our own Close
					log.Warn("disconnected from NATS", "err", err)
				}
			}),
			nats.ReconnectHandler(func(c *nats.Conn) {
				log.Info("reconnected to NATS", "url", c.ConnectedUrlRedacted())
			}))
	}
	base = append(base, sec...)
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(url), err)
	}
	return nc, nil
}

// Security returns the connection options of cfg's credentials and TLS
// settings: a credentials file (user JWT and seed), or an nkey seed file,
// and a CA bundle and client certificate (which require TLS). The files
// are read now, so a missing or bad one fails here, not at each
// reconnection. cfg's zero fields take their defaults first.
func Security(cfg config.NATS) ([]nats.Option, error) {
	if err := config.Prepare(&cfg); err != nil {
		return nil, err
	}
	var opts []nats.Option
	if cfg.NATSCredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCredsFile))
	}
	if cfg.NATSNKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NATSNKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: NATS_NKEY_FILE: %w", config.ErrTLS, err)
		}
		opts = append(opts, o)
	}
	tc, err := cfg.TLS()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// redactURL hides the passwords of NATS URLs (user:password@) in errors.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// Close closes nc after pushing out what it still buffers (acks are
// fire-and-forget publishes), waiting at most timeout. A disconnected
// client has nothing to push and would only wait, so it is closed at once.
// A failed flush is logged when log is not nil.
func Close(nc *nats.Conn, timeout time.Duration, log *slog.Logger) {
	if nc.IsConnected() {
		if err := nc.FlushTimeout(timeout); err != nil && log != nil {
			log.Warn("flushing NATS on shutdown", "err", err)
		}
	}
	nc.Close()
}

// DeadLetter publishes data to the stage's dead-letter subject with the
// reason and original subject as headers, and waits for the stream's ack.
func DeadLetter(ctx context.Context, js jetstream.JetStream, stage, subject string, data []byte, reason error) error {
	msg := nats.NewMsg(DeadLetterSubject(stage))
	msg.Data = data
	msg.Header.Set(HeaderReason, reason.Error())
	msg.Header.Set(HeaderSubject, subject)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("dead-letter to %s: %w", msg.Subject, err)
	}
	return nil
}

// OpenKV creates a KV bucket keeping one value per key, on file storage
// with Replicas(js) replicas, whose keys expire ttl after their last write
// (0: never), or brings an existing bucket's settings (replicas included)
// in line.
func OpenKV(ctx context.Context, js jetstream.JetStream, bucket, description string, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: description, History: 1, TTL: ttl, Storage: jetstream.FileStorage,
		Replicas: Replicas(js),
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", bucket, err)
	}
	return kv, nil
}
