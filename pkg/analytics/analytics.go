// Package analytics owns the ClickHouse side of darklaunch: the schema (a
// public interface for SQL analysts, documented in docs/clickhouse.md), the
// connection, and batched inserts of comparison rows.
//
// The schema must work on ClickHouse 18.16 (Debian) and on current LTS, so it
// avoids TTL, LowCardinality, DateTime64, Map and JSON types.
package analytics

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/darklaunch/darklaunch/pkg/config"
)

// Options say where ClickHouse is and how to reach it.
type Options struct {
	Addr     string
	Database string
	User     string
	Password string
	// TLS, when set, is used to connect (the server's secure native port).
	TLS *tls.Config
	// ReadTimeout bounds the wait for each packet of an answer; 0 means
	// defaultReadTimeout. A benchmark of raw-row queries over tens of
	// millions of rows on a loaded machine needs more.
	ReadTimeout time.Duration
}

const defaultReadTimeout = 60 * time.Second

// OptionsFor are the Options of a service's shared ClickHouse settings,
// TLS included (its files are read now).
func OptionsFor(c config.ClickHouse) (Options, error) {
	t, err := c.TLS()
	if err != nil {
		return Options{}, err
	}
	return Options{Addr: c.ClickHouseAddr, Database: c.ClickHouseDatabase, User: c.ClickHouseUser,
		Password: c.ClickHousePassword, TLS: t}, nil
}

// Connect opens the database the settings name (over TLS when they say
// so) and applies the schema: what every service that reads or writes the
// comparisons does first. The connection is closed when the schema cannot
// be applied.
func Connect(ctx context.Context, c config.ClickHouse) (driver.Conn, error) {
	o, err := OptionsFor(c)
	if err != nil {
		return nil, err
	}
	conn, err := Open(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := MigrateCluster(ctx, conn, c.ClickHouseDatabase, c.ClickHouseCluster); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

var dbName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Open connects over the native protocol (the HTTP protocol of
// clickhouse-go does not work with 18.16) and pings.
func Open(ctx context.Context, o Options) (driver.Conn, error) {
	if !dbName.MatchString(o.Database) {
		return nil, fmt.Errorf("clickhouse database name %q is not a plain identifier", o.Database)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{o.Addr},
		Protocol:    clickhouse.Native,
		Auth:        clickhouse.Auth{Database: "default", Username: o.User, Password: o.Password},
		DialTimeout: 5 * time.Second,
		ReadTimeout: cmp.Or(o.ReadTimeout, defaultReadTimeout),
		TLS:         o.TLS,
		// An insert into a Distributed table (CLICKHOUSE_CLUSTER) returns
		// once every shard stored its rows, as on one server: the
		// comparator acks, and the reporter seals and reads, only what
		// ClickHouse holds. No effect on a table of one server.
		Settings: clickhouse.Settings{"insert_distributed_sync": 1},
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", o.Addr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ping clickhouse %s: %w", o.Addr, err)
	}
	return conn, nil
}

// Migrate creates the database and tables if they do not exist. It is
// idempotent and safe to run from several processes at once.
func Migrate(ctx context.Context, conn driver.Conn, database string) error {
	return MigrateCluster(ctx, conn, database, "")
}

// MigrateCluster is Migrate on the ClickHouse cluster named cluster
// (CLICKHOUSE_CLUSTER; empty: a single node), in the cluster form of
// cluster.go.
func MigrateCluster(ctx context.Context, conn driver.Conn, database, cluster string) error {
	if !dbName.MatchString(database) {
		return fmt.Errorf("clickhouse database name %q is not a plain identifier", database)
	}
	sc, err := newClusterSchema(database, cluster)
	if err != nil {
		return err
	}
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS " + database,
		fmt.Sprintf(comparisonsDDL, database),
		fmt.Sprintf(examplesDDL, database),
		fmt.Sprintf(auditDDL, database),
		fmt.Sprintf(sealsDDL, database),
		fmt.Sprintf(pairCountsDDL, database),
		fmt.Sprintf(diffCountsDDL, database),
		fmt.Sprintf(latencyHistDDL, database),
		fmt.Sprintf(secondaryHistDDL, database),
		fmt.Sprintf(schemaMarksDDL, database),
		fmt.Sprintf(byTimeDDL, database),
	}
	for _, s := range stmts {
		rewritten, err := sc.rewrite(s)
		if err != nil {
			return fmt.Errorf("migrate clickhouse: %w", err)
		}
		for _, s := range rewritten {
			if err := conn.Exec(ctx, s); err != nil {
				return fmt.Errorf("migrate clickhouse: %w", err)
			}
		}
	}
	for _, t := range []struct {
		table string
		cols  []column
	}{{"comparisons", comparisonsAdded}, {"seals", sealsAdded}, {"pair_counts", pairCountsAdded}} {
		if err := addColumns(ctx, conn, sc, database, t.table, t.cols); err != nil {
			return err
		}
	}
	// The view selects columns added above, so it comes after them; the
	// backfill after the view (and the Distributed tables it goes
	// through on a cluster), so no row falls between the two.
	for _, s := range []string{fmt.Sprintf(byTimeViewDDL, database)} {
		rewritten, err := sc.rewrite(s)
		if err != nil {
			return fmt.Errorf("migrate clickhouse: %w", err)
		}
		for _, s := range rewritten {
			if err := conn.Exec(ctx, s); err != nil {
				return fmt.Errorf("migrate clickhouse: %w", err)
			}
		}
	}
	if err := sc.distribute(ctx, conn); err != nil {
		return err
	}
	return backfillByTime(ctx, conn, database)
}

// column is one column added to a table after its first version.
type column struct{ name, typ string }

// comparisonsAdded are the columns added to comparisons since its first
// version, in order. Columns are only ever appended, never renamed or
// retyped: the table is a public interface.
var comparisonsAdded = []column{
	{"diff_generalized", "Array(String)"},
	{"diff_noise", "Array(UInt8)"},
	{"fingerprint", "String"},
	{"has_secondary", "UInt8"},
	{"secondary_status", "UInt16"},
	{"secondary_latency_us", "UInt64"},
	{"secondary_error", "String"},
	{"headers_match", "UInt8"},
	{"body_format", "String"},
	{"diff_summary", "String"},
	{"rules_revision", "UInt64"},
}

// addColumns adds the columns a table lacks. ClickHouse 18.16 has no
// ADD COLUMN IF NOT EXISTS, so it reads system.columns first; when another
// process added a column in between, the ALTER fails and the re-read shows
// the column, which is success.
// On a cluster it alters the local table on every server (sc).
func addColumns(ctx context.Context, conn driver.Conn, sc *clusterSchema, database, table string, cols []column) error {
	table = sc.local(table)
	have := func() (map[string]bool, error) {
		rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = ?", database, table)
		if err != nil {
			return nil, fmt.Errorf("migrate clickhouse: read columns of %s.%s: %w", database, table, err)
		}
		defer rows.Close()
		names := map[string]bool{}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return nil, err
			}
			names[n] = true
		}
		return names, rows.Err()
	}
	names, err := have()
	if err != nil {
		return err
	}
	for _, c := range cols {
		if names[c.name] {
			continue
		}
		if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s%s ADD COLUMN %s %s", database, table, sc.on(), c.name, c.typ)); err != nil {
			if again, rerr := have(); rerr == nil && again[c.name] {
				continue
			}
			return fmt.Errorf("migrate clickhouse: add column %s.%s.%s: %w", database, table, c.name, err)
		}
	}
	return nil
}

// comparisonsDDL is the comparisons table: one row per compared pair.
// ReplacingMergeTree keyed by envelope id collapses a pair stored twice (a
// redelivery after a crash between insert and ack); queries that need exact
// counts read it with FINAL. Every column is documented in docs/clickhouse.md.
const comparisonsDDL = `CREATE TABLE IF NOT EXISTS %s.comparisons (
	launch_id String,
	envelope_id String,
	ts DateTime,
	received_at_us Int64,
	tap_id String,
	method String,
	route String,
	path String,
	primary_status UInt16,
	shadow_status UInt16,
	primary_latency_us UInt64,
	shadow_latency_us UInt64,
	match UInt8,
	status_match UInt8,
	content_type_match UInt8,
	body_match UInt8,
	shadow_error String,
	shadow_error_kind String,
	diff_paths Array(String),
	diff_kinds Array(String),
	request_body_truncated UInt8,
	primary_body_truncated UInt8,
	shadow_body_truncated UInt8,
	compare_note String,
	inserted_at DateTime
) ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (launch_id, route, envelope_id)`

// Row is one row of the comparisons table.
type Row struct {
	LaunchID             string
	EnvelopeID           string
	TS                   time.Time
	TapID                string
	Method               string
	Route                string
	Path                 string
	PrimaryStatus        uint16
	ShadowStatus         uint16
	PrimaryLatencyUS     uint64
	ShadowLatencyUS      uint64
	Match                bool
	StatusMatch          bool
	ContentTypeMatch     bool
	BodyMatch            bool
	ShadowError          string
	ShadowErrorKind      string
	DiffPaths            []string
	DiffKinds            []string
	RequestBodyTruncated bool
	PrimaryBodyTruncated bool
	ShadowBodyTruncated  bool
	CompareNote          string
	// DiffGeneralized and DiffNoise are parallel to DiffPaths: the path with
	// indices as [*], and whether the difference also appeared between
	// primary and secondary in the same request.
	DiffGeneralized    []string
	DiffNoise          []bool
	Fingerprint        string
	HasSecondary       bool
	SecondaryStatus    uint16
	SecondaryLatencyUS uint64
	SecondaryError     string
	HeadersMatch       bool
	BodyFormat         string
	DiffSummary        string
	RulesRevision      uint64
}

const insertColumns = `launch_id, envelope_id, ts, received_at_us, tap_id, method, route, path,
	primary_status, shadow_status, primary_latency_us, shadow_latency_us,
	match, status_match, content_type_match, body_match, shadow_error, shadow_error_kind,
	diff_paths, diff_kinds, request_body_truncated, primary_body_truncated, shadow_body_truncated,
	compare_note, inserted_at,
	diff_generalized, diff_noise, fingerprint, has_secondary, secondary_status, secondary_latency_us,
	secondary_error, headers_match, body_format, diff_summary, rules_revision`

// Insert writes rows in one batch. The INSERT names its columns: 18.16
// rejects a batch without them.
func Insert(ctx context.Context, conn driver.Conn, database string, rows []Row) error {
	now := time.Now().UTC()
	return insertBatch(ctx, conn, database, "comparisons", insertColumns, "rows", rows,
		func(r *Row) (string, []any) {
			return r.EnvelopeID, []any{r.LaunchID, r.EnvelopeID, r.TS.UTC(), r.TS.UnixMicro(), r.TapID, r.Method, r.Route, r.Path,
				r.PrimaryStatus, r.ShadowStatus, r.PrimaryLatencyUS, r.ShadowLatencyUS,
				b2u(r.Match), b2u(r.StatusMatch), b2u(r.ContentTypeMatch), b2u(r.BodyMatch), r.ShadowError, r.ShadowErrorKind,
				orEmpty(r.DiffPaths), orEmpty(r.DiffKinds), b2u(r.RequestBodyTruncated), b2u(r.PrimaryBodyTruncated), b2u(r.ShadowBodyTruncated),
				r.CompareNote, now,
				orEmpty(r.DiffGeneralized), bools(r.DiffNoise), r.Fingerprint, b2u(r.HasSecondary), r.SecondaryStatus, r.SecondaryLatencyUS,
				r.SecondaryError, b2u(r.HeadersMatch), r.BodyFormat, r.DiffSummary, r.RulesRevision}
		})
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func bools(bs []bool) []uint8 {
	out := make([]uint8, len(bs))
	for i, b := range bs {
		out[i] = b2u(b)
	}
	return out
}
