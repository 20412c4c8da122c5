package analytics

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// insertBatch writes items into database.table in one batch. The INSERT
// names its columns (ClickHouse 18.16 rejects a batch without them);
// values returns an item's id, named in an append error, and its values in
// the order of columns. what names the items in errors ("rows"). Nothing is
// sent when an append fails: the batch is aborted whole.
func insertBatch[T any](ctx context.Context, conn driver.Conn, database, table, columns, what string, items []T,
	values func(*T) (id string, vals []any)) error {
	if len(items) == 0 {
		return nil
	}
	batch, err := conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.%s (%s)", database, table, columns))
	if err != nil {
		return fmt.Errorf("prepare insert of %s into %s: %w", what, table, err)
	}
	for i := range items {
		id, vals := values(&items[i])
		if err := batch.Append(vals...); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("append %s %s to %s: %w", what, id, table, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d %s into %s: %w", len(items), what, table, err)
	}
	return nil
}
