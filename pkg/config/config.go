// Package config loads a service's settings from the environment with
// envconfig and prints them as a table for -h, and sets up logging.
package config

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// NATS is the shared NATS setting: where, and how to authenticate and
// secure the connection (tls.go checks and loads the files).
type NATS struct {
	NATSURL       string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222" desc:"NATS server URL(s), comma-separated; nats://user:password@host:4222 for user authentication, tls://host:4222 to require TLS"`
	NATSCredsFile string `envconfig:"NATS_CREDS_FILE" default:"" desc:"NATS credentials file (user JWT and nkey seed, as nsc writes it) to authenticate with; empty: none"`
	NATSNKeyFile  string `envconfig:"NATS_NKEY_FILE" default:"" desc:"file holding an nkey user seed (SU...) to authenticate with (not with NATS_CREDS_FILE); empty: none"`
	NATSCAFile    string `envconfig:"NATS_CA_FILE" default:"" desc:"PEM CA bundle that signs the NATS server's certificate; setting it or a client certificate requires TLS; empty: the system's CAs"`
	NATSCertFile  string `envconfig:"NATS_CERT_FILE" default:"" desc:"PEM client certificate for mutual TLS with NATS (with NATS_KEY_FILE)"`
	NATSKeyFile   string `envconfig:"NATS_KEY_FILE" default:"" desc:"PEM private key of NATS_CERT_FILE"`
	NATSReplicas  int    `envconfig:"NATS_REPLICAS" default:"1" desc:"replicas (1-5) of every JetStream stream and KV bucket darklaunch creates; existing ones are scaled to it at start. 3 on a NATS cluster of 3 or more servers survives the loss of one"`
	// The streams' limits: JetStream reserves MaxBytes on every replica
	// of each stream when it is created, so they size the NATS servers.
	NATSStreamMaxBytes int64         `envconfig:"NATS_STREAM_MAX_BYTES" default:"10737418240" desc:"bytes each of the three streams (envelopes, pairs, dead letters) keeps at most, the oldest discarded first; JetStream reserves this on every replica when a stream is created or updated, so the NATS servers need 3 x NATS_STREAM_MAX_BYTES of JetStream file storage (max_file_store) free; set it on every service alike (each applies it at start). At least 1 MiB"`
	NATSStreamMaxAge   time.Duration `envconfig:"NATS_STREAM_MAX_AGE" default:"24h" desc:"longest a message stays in the three streams unprocessed before it is discarded; set it on every service alike"`
}

// ClickHouse is the shared ClickHouse setting.
type ClickHouse struct {
	ClickHouseAddr          string `envconfig:"CLICKHOUSE_ADDR" default:"127.0.0.1:9000" desc:"ClickHouse native protocol address host:port (the secure native port, usually 9440, with CLICKHOUSE_TLS)"`
	ClickHouseDatabase      string `envconfig:"CLICKHOUSE_DATABASE" default:"darklaunch" desc:"ClickHouse database holding the darklaunch tables"`
	ClickHouseUser          string `envconfig:"CLICKHOUSE_USER" default:"default" desc:"ClickHouse user"`
	ClickHousePassword      string `envconfig:"CLICKHOUSE_PASSWORD" default:"" desc:"ClickHouse password"`
	ClickHouseTLS           bool   `envconfig:"CLICKHOUSE_TLS" default:"false" desc:"connect to ClickHouse over TLS"`
	ClickHouseCAFile        string `envconfig:"CLICKHOUSE_CA_FILE" default:"" desc:"PEM CA bundle that signs ClickHouse's certificate (with CLICKHOUSE_TLS); empty: the system's CAs"`
	ClickHouseCertFile      string `envconfig:"CLICKHOUSE_CERT_FILE" default:"" desc:"PEM client certificate for mutual TLS with ClickHouse (with CLICKHOUSE_KEY_FILE)"`
	ClickHouseKeyFile       string `envconfig:"CLICKHOUSE_KEY_FILE" default:"" desc:"PEM private key of CLICKHOUSE_CERT_FILE"`
	ClickHouseTLSSkipVerify bool   `envconfig:"CLICKHOUSE_TLS_SKIP_VERIFY" default:"false" desc:"do not verify ClickHouse's certificate (insecure: for tests only)"`
	ClickHouseCluster       string `envconfig:"CLICKHOUSE_CLUSTER" default:"" desc:"ClickHouse cluster (a name of the servers' remote_servers) to create the tables on, as Replicated*MergeTree tables <table>_local behind Distributed tables <table> (docs/clickhouse.md, Cluster); empty: a single server"`
}

// Redis is the shared Redis setting.
type Redis struct {
	RedisURL      string `envconfig:"REDIS_URL" default:"redis://127.0.0.1:6379/0" desc:"Redis URL (redis://[user:pass@]host:port/db; rediss:// for TLS)"`
	RedisCAFile   string `envconfig:"REDIS_CA_FILE" default:"" desc:"PEM CA bundle that signs Redis's certificate (with a rediss:// URL); empty: the system's CAs"`
	RedisCertFile string `envconfig:"REDIS_CERT_FILE" default:"" desc:"PEM client certificate for mutual TLS with Redis (with REDIS_KEY_FILE)"`
	RedisKeyFile  string `envconfig:"REDIS_KEY_FILE" default:"" desc:"PEM private key of REDIS_CERT_FILE"`
}

// identifier reports whether s is a plain SQL identifier.
func identifier(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// Logging selects the log format and level.
type Logging struct {
	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"log level: debug, info, warn, error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"text" desc:"log format: text or json"`
}

// Profiling says whether a service serves Go's profiles on its admin
// address (admin.Server.HandleProfiles).
type Profiling struct {
	Pprof string `envconfig:"PPROF" default:"on" desc:"on: serve Go's profiles (net/http/pprof) under /debug/pprof/ on the service's admin address (a profile costs only while one is taken; keep the admin port private, as for /metrics); off: not served"`
}

// Validate checks PPROF.
func (p Profiling) Validate() error {
	if p.Pprof != "on" && p.Pprof != "off" {
		return fmt.Errorf("%w: PPROF %q must be on or off", ErrSettings, p.Pprof)
	}
	return nil
}

// Profiles reports whether PPROF is on.
func (p Profiling) Profiles() bool { return p.Pprof == "on" }

// Load fills spec from the environment and validates it (Validate). With
// -h or --help among args it prints the settings table to out and reports
// help=true; the caller exits.
func Load(service string, spec any, args []string, out io.Writer) (help bool, err error) {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprintf(out, "%s: settings are read from the environment\n\n", service)
			return true, Usage(spec, out)
		}
	}
	if err := envconfig.Process("", spec); err != nil {
		return false, fmt.Errorf("%s settings: %w: %w", service, ErrSettings, err)
	}
	if err := Validate(spec); err != nil {
		return false, fmt.Errorf("%s settings: %w", service, err)
	}
	return false, nil
}

// Usage prints one row per setting: name, type, default, description.
func Usage(spec any, out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tTYPE\tDEFAULT\tDESCRIPTION")
	const format = "{{range .}}{{usage_key .}}\t{{usage_type .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef("", spec, tw, format); err != nil {
		return err
	}
	return tw.Flush()
}

// Logger builds the service's slog logger.
func (l Logging) Logger(service string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if strings.EqualFold(l.LogFormat, "json") {
		h = slog.NewJSONHandler(os.Stderr, opts)
	} else {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.New(h).With("service", service)
}

// Keys returns the environment variable names spec reads, for checks that
// deployment files only set names a service knows.
func Keys(spec any) ([]string, error) {
	var b strings.Builder
	if err := envconfig.Usagef("", spec, &b, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		return nil, err
	}
	return strings.Fields(b.String()), nil
}
