package analytics_test

import (
	"testing"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// TestOpenOverTLS: with CLICKHOUSE_TLS and the CA that signed the server's
// certificate, Open connects to a real clickhouse-server's secure native
// port, pings and migrates; without the CA the handshake is refused
// (skip-verify is off by default), and a plain connection to the secure
// port fails.
func TestOpenOverTLS(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	addr := testenv.StartClickHouseTLS(t, files)
	ctx := testenv.Context(t)
	cfg := config.ClickHouse{ClickHouseAddr: addr, ClickHouseDatabase: "tls_test", ClickHouseUser: "default",
		ClickHouseTLS: true, ClickHouseCAFile: files.CA}
	o, err := analytics.OptionsFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := analytics.Open(ctx, o)
	if err != nil {
		t.Fatalf("open over TLS: %v", err)
	}
	defer conn.Close()
	if err := analytics.Migrate(ctx, conn, "tls_test"); err != nil {
		t.Fatalf("migrate over TLS: %v", err)
	}

	for name, c := range map[string]config.ClickHouse{
		"system CAs only": {ClickHouseTLS: true},
		"another CA":      {ClickHouseTLS: true, ClickHouseCAFile: files.OtherCA},
		"no TLS":          {},
	} {
		c.ClickHouseAddr, c.ClickHouseDatabase, c.ClickHouseUser = addr, "tls_test", "default"
		o, err := analytics.OptionsFor(c)
		if err != nil {
			t.Fatal(err)
		}
		if conn, err := analytics.Open(ctx, o); err == nil {
			conn.Close()
			t.Errorf("%s: connected", name)
		}
	}
}
