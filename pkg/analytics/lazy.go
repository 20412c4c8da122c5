package analytics

import (
	"sync/atomic"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// LazyConn holds the ClickHouse connection a service opens in the
// background once it runs (ClickHouse may come up after it): Get is nil
// until Set. Safe for concurrent use.
type LazyConn struct{ p atomic.Pointer[connBox] }

// connBox boxes the connection (an interface) for atomic.Pointer.
type connBox struct{ driver.Conn }

// Set makes conn the connection Get returns.
func (l *LazyConn) Set(conn driver.Conn) { l.p.Store(&connBox{conn}) }

// Get returns the connection, or nil before Set.
func (l *LazyConn) Get() driver.Conn {
	if b := l.p.Load(); b != nil {
		return b.Conn
	}
	return nil
}
