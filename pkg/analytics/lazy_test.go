package analytics

import (
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

func TestLazyConn(t *testing.T) {
	var l LazyConn
	if l.Get() != nil {
		t.Fatal("Get before Set is not nil")
	}
	var conn driver.Conn = struct{ driver.Conn }{}
	l.Set(conn)
	if l.Get() != conn {
		t.Fatal("Get does not return what Set stored")
	}
}
