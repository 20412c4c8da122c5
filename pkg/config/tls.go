package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ErrTLS wraps every error about TLS and credential files; it is one of
// the ErrSettings (a service exits with code 2).
var ErrTLS = fmt.Errorf("%w: TLS or credentials", ErrSettings)

// ClientTLS is the TLS configuration of a client: caFile is a PEM bundle
// of the CAs that sign the server's certificate (empty: the system's),
// certFile and keyFile a client certificate and its key for mutual TLS
// (both or neither), skipVerify turns off the verification of the
// server's certificate (tests only: it allows any server to pose as
// this one). Files are read now, so a missing or bad one fails here.
func ClientTLS(caFile, certFile, keyFile string, skipVerify bool) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skipVerify} //nolint:gosec // skipVerify is an explicit, documented setting
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file: %w", ErrTLS, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrTLS, caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%w: a client certificate needs both its certificate and its key file", ErrTLS)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %w", ErrTLS, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// MaxReplicas is the most replicas JetStream allows a stream.
const MaxReplicas = 5

// Validate checks the NATS settings: replicas within 1..MaxReplicas,
// stream limits of at least 1 MiB and a positive age, at most one of a
// credentials file and an nkey seed file, each readable, and a TLS
// configuration that loads.
func (n NATS) Validate() error {
	if n.NATSReplicas < 1 || n.NATSReplicas > MaxReplicas {
		return fmt.Errorf("%w: NATS_REPLICAS is %d, want 1 to %d", ErrSettings, n.NATSReplicas, MaxReplicas)
	}
	if n.NATSStreamMaxBytes < 1<<20 {
		return fmt.Errorf("%w: NATS_STREAM_MAX_BYTES is %d, want at least 1 MiB (1048576)", ErrSettings, n.NATSStreamMaxBytes)
	}
	if n.NATSStreamMaxAge <= 0 {
		return fmt.Errorf("%w: NATS_STREAM_MAX_AGE is %s, want a positive duration", ErrSettings, n.NATSStreamMaxAge)
	}
	if n.NATSCredsFile != "" && n.NATSNKeyFile != "" {
		return fmt.Errorf("%w: set NATS_CREDS_FILE or NATS_NKEY_FILE, not both", ErrTLS)
	}
	for name, f := range map[string]string{"NATS_CREDS_FILE": n.NATSCredsFile, "NATS_NKEY_FILE": n.NATSNKeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.ReadFile(f); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrTLS, name, err)
		}
	}
	if _, err := n.TLS(); err != nil {
		return fmt.Errorf("NATS_CA_FILE, NATS_CERT_FILE, NATS_KEY_FILE: %w", err)
	}
	return nil
}

// TLS is the NATS client's TLS configuration, nil when none of
// NATS_CA_FILE, NATS_CERT_FILE is set (a tls:// URL still uses TLS, with
// the system's CAs).
func (n NATS) TLS() (*tls.Config, error) {
	if n.NATSCAFile == "" && n.NATSCertFile == "" && n.NATSKeyFile == "" {
		return nil, nil
	}
	return ClientTLS(n.NATSCAFile, n.NATSCertFile, n.NATSKeyFile, false)
}

// Validate checks the ClickHouse TLS settings.
func (c ClickHouse) Validate() error {
	if _, err := c.TLS(); err != nil {
		return fmt.Errorf("CLICKHOUSE_CA_FILE, CLICKHOUSE_CERT_FILE, CLICKHOUSE_KEY_FILE: %w", err)
	}
	if !c.ClickHouseTLS && (c.ClickHouseCAFile != "" || c.ClickHouseCertFile != "" || c.ClickHouseTLSSkipVerify) {
		return fmt.Errorf("%w: CLICKHOUSE_CA_FILE, CLICKHOUSE_CERT_FILE and CLICKHOUSE_TLS_SKIP_VERIFY need CLICKHOUSE_TLS=true", ErrTLS)
	}
	if c.ClickHouseCluster != "" && !identifier(c.ClickHouseCluster) {
		return fmt.Errorf("%w: CLICKHOUSE_CLUSTER %q is not a plain identifier (letters, digits and _, not starting with a digit)", ErrSettings, c.ClickHouseCluster)
	}
	return nil
}

// TLS is the ClickHouse client's TLS configuration, nil without
// CLICKHOUSE_TLS.
func (c ClickHouse) TLS() (*tls.Config, error) {
	if !c.ClickHouseTLS {
		return nil, nil
	}
	return ClientTLS(c.ClickHouseCAFile, c.ClickHouseCertFile, c.ClickHouseKeyFile, c.ClickHouseTLSSkipVerify)
}

// Validate checks the Redis TLS settings.
func (r Redis) Validate() error {
	_, err := r.TLS(&tls.Config{})
	return err
}

// TLS completes base, the TLS configuration go-redis derives from a
// rediss:// URL (nil for redis://, which TLS returns unchanged), with
// REDIS_CA_FILE and the client certificate.
func (r Redis) TLS(base *tls.Config) (*tls.Config, error) {
	if base == nil || (r.RedisCAFile == "" && r.RedisCertFile == "" && r.RedisKeyFile == "") {
		return base, nil
	}
	c, err := ClientTLS(r.RedisCAFile, r.RedisCertFile, r.RedisKeyFile, false)
	if err != nil {
		return nil, fmt.Errorf("REDIS_CA_FILE, REDIS_CERT_FILE, REDIS_KEY_FILE: %w", err)
	}
	out := base.Clone()
	out.RootCAs, out.Certificates = c.RootCAs, c.Certificates
	out.MinVersion = max(out.MinVersion, c.MinVersion)
	return out, nil
}
