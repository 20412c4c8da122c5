package analytics

import (
	"context"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Background marks ctx's queries as background work nobody waits for (a
// cache refresh, a compaction): ClickHouse runs each on one thread
// (max_threads 1), so they leave the machine's other cores to the queries
// and requests someone waits for. Slower alone, but on a small machine it
// is the difference between a poll served at once and one queued behind
// a refresh that took every core.
func Background(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_threads": 1}))
}
