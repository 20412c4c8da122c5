package config_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

type spec struct {
	config.NATS
	config.ClickHouse
	config.Redis
}

// TestSharedSettingsValidated: Load and Prepare run the Validate of the
// embedded NATS, ClickHouse and Redis settings: bad TLS or credential
// files are settings errors.
func TestSharedSettingsValidated(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	for name, env := range map[string]map[string]string{
		"nats cert without key":     {"NATS_CERT_FILE": files.ClientCert},
		"nats creds missing":        {"NATS_CREDS_FILE": "/nonexistent"},
		"clickhouse CA without TLS": {"CLICKHOUSE_CA_FILE": files.CA},
		"clickhouse CA not a file":  {"CLICKHOUSE_TLS": "true", "CLICKHOUSE_CA_FILE": "/nonexistent"},
		"redis key of another cert": {"REDIS_CERT_FILE": files.ClientCert, "REDIS_KEY_FILE": files.ServerKey},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			var s spec
			if _, err := config.Load("svc", &s, nil, nil); !errors.Is(err, config.ErrTLS) {
				t.Errorf("Load: %v, want ErrTLS", err)
			}
		})
	}
	t.Setenv("CLICKHOUSE_TLS", "true")
	t.Setenv("CLICKHOUSE_CA_FILE", files.CA)
	t.Setenv("NATS_CA_FILE", files.CA)
	var s spec
	if _, err := config.Load("svc", &s, nil, nil); err != nil {
		t.Fatal(err)
	}
	if c, err := s.ClickHouse.TLS(); err != nil || c == nil || c.RootCAs == nil || c.InsecureSkipVerify {
		t.Errorf("ClickHouse TLS %+v, %v", c, err)
	}
	if c, err := (config.ClickHouse{}).TLS(); c != nil || err != nil {
		t.Errorf("ClickHouse without TLS: %v %v", c, err)
	}
}

// TestRedisTLS: the TLS configuration go-redis derives from a rediss://
// URL, completed with REDIS_CA_FILE and a client certificate, talks to a
// real redis-server that accepts TLS only; without the CA it does not.
func TestRedisTLS(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	u, err := url.Parse(testenv.StartRedisTLS(t, files))
	if err != nil {
		t.Fatal(err)
	}
	// What redis.ParseURL sets for rediss:// (go-redis v9).
	base := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if c, err := (config.Redis{}).TLS(nil); c != nil || err != nil {
		t.Fatalf("redis:// URL: %v %v", c, err)
	}
	c, err := config.Redis{RedisCAFile: files.CA, RedisCertFile: files.ClientCert, RedisKeyFile: files.ClientKey}.TLS(base)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != u.Hostname() || len(c.Certificates) != 1 {
		t.Fatalf("config %+v", c)
	}
	if got := ping(t, u.Host, c); got != "+PONG" {
		t.Fatalf("PING over TLS: %q", got)
	}
	if _, err := tls.Dial("tcp", u.Host, base.Clone()); err == nil {
		t.Error("TLS handshake succeeded without the test CA")
	}
}

func ping(t *testing.T, addr string, c *tls.Config) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// TestNATSReplicas: NATS_REPLICAS defaults to 1 and must be 1 to 5.
func TestNATSReplicas(t *testing.T) {
	if s := config.Default[spec](); s.NATSReplicas != 1 {
		t.Fatalf("default NATS_REPLICAS %d, want 1", s.NATSReplicas)
	}
	for _, bad := range []string{"0", "6", "-1"} {
		t.Setenv("NATS_REPLICAS", bad)
		var s spec
		if _, err := config.Load("svc", &s, nil, nil); !errors.Is(err, config.ErrSettings) || !strings.Contains(err.Error(), "NATS_REPLICAS") {
			t.Errorf("NATS_REPLICAS=%s: %v, want ErrSettings naming NATS_REPLICAS", bad, err)
		}
	}
	t.Setenv("NATS_REPLICAS", "3")
	var s spec
	if _, err := config.Load("svc", &s, nil, nil); err != nil || s.NATSReplicas != 3 {
		t.Fatalf("NATS_REPLICAS=3: %d, %v", s.NATSReplicas, err)
	}
}
