package analytics

import (
	"context"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// openTestDB starts a private clickhouse-server and opens database on it,
// closed when the test ends, with the test's context. With migrate > 0 it
// applies the schema that many times (more than once proves Migrate
// idempotent).
func openTestDB(t *testing.T, database string, migrate int) (context.Context, driver.Conn) {
	t.Helper()
	ctx := testenv.Context(t)
	conn, err := Open(ctx, Options{Addr: testenv.StartClickHouse(t), Database: database, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for range migrate {
		if err := Migrate(ctx, conn, database); err != nil {
			t.Fatal(err)
		}
	}
	return ctx, conn
}
