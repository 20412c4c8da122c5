package analytics

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ExampleSlots is how many examples are kept per diff class: rows share a
// sort key (launch_id, fingerprint, slot), so the ReplacingMergeTree keeps
// one row per slot whatever number of comparators write.
const ExampleSlots = 3

// examplesDDL holds a few redacted example pairs per diff class (read with
// FINAL). Documented in docs/clickhouse.md.
const examplesDDL = `CREATE TABLE IF NOT EXISTS %s.examples (
	launch_id String,
	fingerprint String,
	slot UInt8,
	envelope_id String,
	ts DateTime,
	route String,
	method String,
	path String,
	query String,
	diff_paths Array(String),
	diff_kinds Array(String),
	request_headers String,
	request_body String,
	primary_status UInt16,
	primary_headers String,
	primary_body String,
	shadow_status UInt16,
	shadow_headers String,
	shadow_body String,
	shadow_error String,
	inserted_at DateTime
) ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (launch_id, fingerprint, slot)`

// Example is one stored example pair of a diff class. Every header and body
// in it must already be redacted: this package writes what it is given.
type Example struct {
	LaunchID, Fingerprint string
	Slot                  uint8
	EnvelopeID            string
	TS                    time.Time
	Route, Method, Path   string
	Query                 string
	DiffPaths, DiffKinds  []string
	// Headers are JSON objects of header arrays; bodies are text.
	RequestHeaders, RequestBody string
	PrimaryStatus               uint16
	PrimaryHeaders, PrimaryBody string
	ShadowStatus                uint16
	ShadowHeaders, ShadowBody   string
	ShadowError                 string
}

const exampleColumns = `launch_id, fingerprint, slot, envelope_id, ts, route, method, path, query,
	diff_paths, diff_kinds, request_headers, request_body, primary_status, primary_headers, primary_body,
	shadow_status, shadow_headers, shadow_body, shadow_error, inserted_at`

// InsertExamples writes examples in one batch.
func InsertExamples(ctx context.Context, conn driver.Conn, database string, ex []Example) error {
	now := time.Now().UTC()
	return insertBatch(ctx, conn, database, "examples", exampleColumns, "examples", ex,
		func(e *Example) (string, []any) {
			return e.EnvelopeID, []any{e.LaunchID, e.Fingerprint, e.Slot, e.EnvelopeID, e.TS.UTC(), e.Route, e.Method, e.Path, e.Query,
				orEmpty(e.DiffPaths), orEmpty(e.DiffKinds), e.RequestHeaders, e.RequestBody, e.PrimaryStatus, e.PrimaryHeaders, e.PrimaryBody,
				e.ShadowStatus, e.ShadowHeaders, e.ShadowBody, e.ShadowError, now}
		})
}
