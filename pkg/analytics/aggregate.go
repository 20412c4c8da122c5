package analytics

// Pre-aggregated statistics of a launch, so a report reads thousands of
// aggregate rows instead of millions of comparison rows.
//
// Why not materialized views: a redelivered batch is inserted into
// comparisons twice (18.16 has no insert deduplication for non-replicated
// tables), and a view on the insert would count it twice. Instead Compact
// seals one-minute buckets of a launch once they are older than the
// redelivery horizon: it aggregates each bucket exactly from the
// comparison rows, one row per envelope id (the latest inserted, as FINAL
// would keep), into pair_counts, diff_counts and latency_hist, tagged with
// a seal version, and then records the bucket in seals (version, row
// count, latest inserted_at). A bucket whose row count or latest
// inserted_at changed since (a late or redelivered row) is sealed again
// under a new version; readers use, per bucket, the latest version only.
// The aggregate tables are ReplacingMergeTrees on (bucket, group) with
// the version as the version column: a reseal's groups include the
// previous seal's (rows are only added to a bucket, or their duplicates
// collapse), so background merges drop the superseded versions a
// resealed minute leaves (the current minute is resealed every
// compaction); readers never rely on merges, they filter on the version.
// A statistic is then the sealed buckets' aggregates plus the same
// aggregation over the rows of the buckets not sealed yet (the recent
// tail), computed by one SQL text in both places (groupsSQL), so the two
// parts cannot drift apart. See docs/clickhouse.md.

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// BucketSeconds is the width of a sealed bucket.
const BucketSeconds = 60

// HistogramRatio is the ratio of a latency bin's upper bound to its lower
// bound: bin k >= 1 holds latencies in [HistogramRatio^(k-1),
// HistogramRatio^k) microseconds, bin 0 a latency of 0.
const HistogramRatio = 1.01

const sealsDDL = `CREATE TABLE IF NOT EXISTS %s.seals (
	launch_id String,
	bucket DateTime,
	version UInt64,
	raw_rows UInt64,
	max_inserted_at DateTime,
	until_us Int64,
	sealed_at DateTime
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (launch_id, bucket)`

const pairCountsDDL = `CREATE TABLE IF NOT EXISTS %s.pair_counts (
	launch_id String,
	bucket DateTime,
	version UInt64,
	route String,
	method String,
	raw_mismatch UInt8,
	fingerprint String,
	real_paths Array(String),
	no_paths UInt8,
	compared UInt64,
	shadow_errors UInt64,
	shadow_failures UInt64,
	primary_errors UInt64,
	with_secondary UInt64,
	answered UInt64,
	slower UInt64,
	faster UInt64,
	tied UInt64,
	first_us Int64,
	last_us Int64,
	diffset Array(String),
	has_diffset UInt8
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (launch_id, bucket, route, method, raw_mismatch, fingerprint, cityHash64(real_paths), no_paths)`

const diffCountsDDL = `CREATE TABLE IF NOT EXISTS %s.diff_counts (
	launch_id String,
	bucket DateTime,
	version UInt64,
	route String,
	gpath String,
	kind String,
	diffs UInt64,
	diffs_noisy UInt64,
	sec_diffs UInt64,
	sec_noisy UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (launch_id, bucket, route, gpath, kind)`

const latencyHistDDL = `CREATE TABLE IF NOT EXISTS %s.latency_hist (
	launch_id String,
	bucket DateTime,
	version UInt64,
	route String,
	method String,
	side Enum8('primary' = 0, 'shadow' = 1),
	answered UInt8,
	bin UInt16,
	n UInt64,
	sum_us UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (launch_id, bucket, route, method, side, answered, bin)`

// secondaryHistDDL: latency histograms of the pairs the secondary
// answered (has_secondary = 1): the secondary's over all of them, the
// shadow's over those the shadow answered too (answered = 1). The verdict
// compares the two over the same pairs, both timed by the runner; the
// report shows the secondary's beside the primary's and the shadow's. A
// table of its own (not a side of latency_hist): 18.16 cannot add a value
// to an Enum in a sort key, and a column added outside the key would make
// rows that differ only in it collapse.
const secondaryHistDDL = `CREATE TABLE IF NOT EXISTS %s.secondary_latency_hist (
	launch_id String,
	bucket DateTime,
	version UInt64,
	route String,
	method String,
	side Enum8('shadow' = 1, 'secondary' = 2),
	answered UInt8,
	bin UInt16,
	n UInt64,
	sum_us UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (launch_id, bucket, route, method, side, answered, bin)`

// SealSchema is the version of what a seal aggregates: a bucket sealed
// under an older one (seals.schema) is sealed again by the next full
// compaction, so aggregates added since (schema 1: the shadow against the
// secondary, secondary_latency_hist) cover the whole history. Until then
// such a bucket reads as it was sealed (zero secondary counts).
const SealSchema = 1

// sealsAdded, pairCountsAdded are the columns added to seals and
// pair_counts since their first version (non-key columns: appended, never
// renamed).
var (
	sealsAdded      = []column{{"schema", "UInt16"}}
	pairCountsAdded = []column{{"sec_slower", "UInt64"}, {"sec_faster", "UInt64"}, {"sec_tied", "UInt64"}}
)

// Expressions over comparison rows. Rows written before diff_generalized
// and diff_noise existed hold empty arrays there, and one bad row may hold
// arrays of another length than diff_paths: genExpr and noiseExpr fall
// back to the paths and to "not noise", kindsExpr to ” (see the
// reporter's queries, which these replace).
const (
	genExpr   = "if(length(diff_generalized) = length(diff_paths), diff_generalized, diff_paths)"
	noiseExpr = "if(length(diff_noise) = length(diff_paths), diff_noise, arrayMap(dp -> toUInt8(0), diff_paths))"
	kindsExpr = "if(length(diff_kinds) = length(diff_paths), diff_kinds, arrayMap(dp -> '', diff_paths))"
	// binOf is the latency histogram bin of a microsecond column.
	binOf = "if(%[1]s = 0, toUInt16(0), toUInt16(least(floor(log(%[1]s) / log(1.01)) + 1, 65535)))"
)

// sourceColumns are the comparison columns the aggregates read.
const sourceColumns = "envelope_id, ts, received_at_us, route, method, primary_status, shadow_status, primary_latency_us, shadow_latency_us, " +
	"`match`, shadow_error, diff_paths, diff_kinds, diff_generalized, diff_noise, fingerprint, has_secondary, secondary_latency_us, secondary_error"

// dedupSource is the launch's comparison rows matching where, one per
// envelope id: the latest inserted (the row FINAL keeps), which takes a
// sort; with anyCopy, the first one read (a hash set, no sort: for the
// unsealed tail, read at every report). Copies of a pair differ only when
// it was compared twice under different rules.
//
// The anyCopy reads select a time range of the launch (the tail past the
// watermark, the edge minutes of a window): they read the time-ordered
// copy comparisons_by_time, whose sort key (launch_id, received_at_us)
// makes the range's cost that of its own rows; comparisons is sorted by
// (launch_id, route, envelope_id), where a time range scans the whole
// launch. The copy may hold a pair more than once (a redelivery, the
// backfill overlapping the view): LIMIT 1 BY envelope_id keeps one. The
// seals read comparisons itself, whose rows they count.
func dedupSource(db, where string, anyCopy bool) string {
	order, table := " ORDER BY envelope_id, inserted_at DESC", "comparisons"
	if anyCopy {
		order, table = "", ByTimeTable
	}
	// PREWHERE: only the time columns are read for the launch's other
	// rows.
	return "(SELECT " + sourceColumns + " FROM " + db + "." + table + " PREWHERE launch_id = @launch AND (" + where + ")" +
		order + " LIMIT 1 BY envelope_id)"
}

// The aggregations of a source of comparison rows, one per aggregate
// table, grouped by bucket; their columns are the table's after launch_id
// and version.
const (
	pairGroupsSQL = "SELECT toStartOfMinute(ts) AS bucket, route, method, " +
		"toUInt8(`match` = 0 AND shadow_error = '') AS raw_mismatch, " +
		"if(raw_mismatch = 1, fingerprint, '') AS fp, " +
		"if(raw_mismatch = 1, arraySort(arrayDistinct(arrayFilter((dg, dn) -> dn = 0, " + genExpr + ", " + noiseExpr + "))), emptyArrayString()) AS rpaths, " +
		"toUInt8(raw_mismatch = 1 AND length(diff_paths) = 0) AS nopaths, " +
		"count() AS compared, countIf(shadow_error != '') AS shadow_errors, " +
		"countIf(shadow_error != '' OR shadow_status >= 500) AS shadow_failures, countIf(primary_status >= 500) AS primary_errors, " +
		"countIf(has_secondary = 1) AS with_secondary, countIf(shadow_error = '') AS answered, " +
		"countIf(shadow_error = '' AND shadow_latency_us > primary_latency_us) AS slower, " +
		"countIf(shadow_error = '' AND shadow_latency_us < primary_latency_us) AS faster, " +
		"countIf(shadow_error = '' AND shadow_latency_us = primary_latency_us) AS tied, " +
		"countIf(shadow_error = '' AND has_secondary = 1 AND shadow_latency_us > secondary_latency_us) AS sec_slower, " +
		"countIf(shadow_error = '' AND has_secondary = 1 AND shadow_latency_us < secondary_latency_us) AS sec_faster, " +
		"countIf(shadow_error = '' AND has_secondary = 1 AND shadow_latency_us = secondary_latency_us) AS sec_tied, " +
		"min(received_at_us) AS first_us, max(received_at_us) AS last_us, " +
		"anyIf(arraySort(arrayDistinct(arrayFilter((dk, dn) -> dn = 0, arrayMap((dg, k) -> concat(dg, '\\t', k), " + genExpr + ", " + kindsExpr + "), " + noiseExpr + "))), " +
		"length(diff_kinds) = length(diff_paths)) AS dset, " +
		"toUInt8(countIf(length(diff_kinds) = length(diff_paths)) > 0) AS has_dset " +
		"FROM %s GROUP BY bucket, route, method, raw_mismatch, fp, rpaths, nopaths"

	// diffGroupsSQL: per (route, generalized path, kind), the differences
	// over the pairs the shadow answered whose kinds pair with their paths
	// (the report's diffs) and over the raw mismatches the secondary
	// answered (the noise decision), each with how many were noise in
	// their request.
	diffGroupsSQL = "SELECT bucket, route, gpath, kind, countIf(a = 1) AS diffs, sumIf(flag, a = 1) AS diffs_noisy, " +
		"countIf(b = 1) AS sec_diffs, sumIf(flag, b = 1) AS sec_noisy FROM (" +
		"SELECT toStartOfMinute(ts) AS bucket, route, " + genExpr + " AS gpaths, " + kindsExpr + " AS kinds, " + noiseExpr + " AS flags, " +
		"toUInt8(shadow_error = '' AND length(diff_kinds) = length(diff_paths)) AS a, " +
		"toUInt8(has_secondary = 1 AND `match` = 0 AND shadow_error = '') AS b " +
		"FROM %s WHERE length(diff_paths) > 0 AND (shadow_error = '' AND length(diff_kinds) = length(diff_paths) OR has_secondary = 1 AND `match` = 0 AND shadow_error = '')" +
		") ARRAY JOIN gpaths AS gpath, kinds AS kind, flags AS flag GROUP BY bucket, route, gpath, kind"

	// histGroupsSQL: latency histograms per side, the primary's over every
	// pair, the shadow's over the pairs it answered; answered says which
	// pairs the shadow answered, so the verdict can read both sides over
	// the same pairs.
	histGroupsSQL = "SELECT bucket, route, method, side, answered, bin, count() AS n, sum(us) AS sum_us FROM (" +
		"SELECT toStartOfMinute(ts) AS bucket, route, method, toUInt8(shadow_error = '') AS answered, " +
		"arrayJoin(if(shadow_error = '', [(toUInt8(0), BINP, primary_latency_us), (toUInt8(1), BINS, shadow_latency_us)], [(toUInt8(0), BINP, primary_latency_us)])) AS sb, " +
		"tupleElement(sb, 3) AS us, " +
		"CAST(tupleElement(sb, 1) AS Enum8('primary' = 0, 'shadow' = 1)) AS side, tupleElement(sb, 2) AS bin FROM %s" +
		") GROUP BY bucket, route, method, side, answered, bin"

	// secHistGroupsSQL: the same over the pairs the secondary answered,
	// its side for each, the shadow's where the shadow answered too.
	secHistGroupsSQL = "SELECT bucket, route, method, side, answered, bin, count() AS n, sum(us) AS sum_us FROM (" +
		"SELECT toStartOfMinute(ts) AS bucket, route, method, toUInt8(shadow_error = '') AS answered, " +
		"arrayJoin(if(shadow_error = '', [(toUInt8(2), BINX, secondary_latency_us), (toUInt8(1), BINS, shadow_latency_us)], [(toUInt8(2), BINX, secondary_latency_us)])) AS sb, " +
		"tupleElement(sb, 3) AS us, " +
		"CAST(tupleElement(sb, 1) AS Enum8('shadow' = 1, 'secondary' = 2)) AS side, tupleElement(sb, 2) AS bin FROM %s WHERE has_secondary = 1" +
		") GROUP BY bucket, route, method, side, answered, bin"
)

var bins = strings.NewReplacer("BINP", fmt.Sprintf(binOf, "primary_latency_us"), "BINS", fmt.Sprintf(binOf, "shadow_latency_us"),
	"BINX", fmt.Sprintf(binOf, "secondary_latency_us"))

var histGroups, secHistGroups = bins.Replace(histGroupsSQL), bins.Replace(secHistGroupsSQL)

// aggregate is one aggregate table: its columns after launch_id, bucket
// and version, and the SQL that computes them from a source.
type aggregate struct {
	table   string
	columns string
	// selected are the columns of groups in the order of columns.
	selected string
	groups   string
}

var aggregates = []aggregate{
	{"pair_counts", "route, method, raw_mismatch, fingerprint, real_paths, no_paths, compared, shadow_errors, shadow_failures, primary_errors, " +
		"with_secondary, answered, slower, faster, tied, first_us, last_us, diffset, has_diffset, sec_slower, sec_faster, sec_tied",
		"route, method, raw_mismatch, fp, rpaths, nopaths, compared, shadow_errors, shadow_failures, primary_errors, " +
			"with_secondary, answered, slower, faster, tied, first_us, last_us, dset, has_dset, sec_slower, sec_faster, sec_tied", pairGroupsSQL},
	{"diff_counts", "route, gpath, kind, diffs, diffs_noisy, sec_diffs, sec_noisy",
		"route, gpath, kind, diffs, diffs_noisy, sec_diffs, sec_noisy", diffGroupsSQL},
	{"latency_hist", "route, method, side, answered, bin, n, sum_us", "route, method, side, answered, bin, n, sum_us", histGroups},
	{"secondary_latency_hist", "route, method, side, answered, bin, n, sum_us", "route, method, side, answered, bin, n, sum_us", secHistGroups},
}

// BucketSummary is what Compact compares a sealed bucket with: the rows
// stored in it received before UntilUS (duplicates included) and their
// latest inserted_at. UntilUS is the bucket's end, or the watermark for
// the bucket that holds it.
type BucketSummary struct {
	Bucket        time.Time
	Rows          uint64
	MaxInsertedAt time.Time
	UntilUS       int64
	// Schema is the SealSchema the bucket was sealed under.
	Schema uint16
}

// CompactResult says what one Compact did.
type CompactResult struct {
	// Sealed are the buckets sealed for the first time, Resealed those
	// sealed again because rows arrived or collapsed since, or because
	// they were sealed under an older SealSchema.
	Sealed, Resealed int
	// Rows are the comparison rows read (duplicates included).
	Rows uint64
	// Pending are the buckets with rows not sealed yet (too recent).
	Pending int
}

// maxSealRows bounds the comparison rows one sealing query sorts for
// deduplication; more buckets are sealed in several queries.
const maxSealRows = 1_000_000

// Compact seals the launch's pairs received before the watermark now -
// sealAfter: every bucket with such pairs that is not sealed, or whose
// pairs changed since it was sealed (a late or redelivered row, a merge
// that collapsed a duplicate), or, for the bucket holding the watermark,
// that got pairs before it since (it is sealed up to the watermark). It is
// idempotent and safe to run from several processes at once: each seal is
// a new version and readers use a bucket's latest.
func Compact(ctx context.Context, conn driver.Conn, database, launchID string, now time.Time, sealAfter time.Duration) (CompactResult, error) {
	return CompactRecent(ctx, conn, database, launchID, now, sealAfter, time.Time{})
}

// CompactRecent is Compact looking only at the buckets from the minute of
// since on (all of them when since is zero): cheaper on a long launch,
// whose older buckets change only when a late row arrives.
func CompactRecent(ctx context.Context, conn driver.Conn, database, launchID string, now time.Time, sealAfter time.Duration, since time.Time) (CompactResult, error) {
	var res CompactResult
	w := now.Add(-sealAfter).UnixMicro()
	from := uint32(0)
	if !since.IsZero() {
		from = uint32(since.Unix() - since.Unix()%BucketSeconds)
	}
	args := []any{clickhouse.Named("launch", launchID), clickhouse.Named("w", w), clickhouse.Named("since", from)}
	type summary struct {
		BucketSummary
		all uint64
	}
	raw, err := ScanAll(ctx, conn, "bucket summary",
		"SELECT toStartOfMinute(ts) AS b, countIf(received_at_us < @w), maxIf(inserted_at, received_at_us < @w), count() FROM "+database+
			".comparisons PREWHERE launch_id = @launch AND ts >= toDateTime(@since) GROUP BY b ORDER BY b",
		func(rows driver.Rows) (s summary, err error) {
			err = rows.Scan(&s.Bucket, &s.Rows, &s.MaxInsertedAt, &s.all)
			return s, err
		}, args...)
	if err != nil {
		return res, err
	}
	sealed, err := ScanAll(ctx, conn, "seals",
		"SELECT bucket, argMax(raw_rows, version), argMax(max_inserted_at, version), argMax(until_us, version), argMax(schema, version) FROM "+database+
			".seals WHERE launch_id = @launch AND bucket >= toDateTime(@since) GROUP BY bucket",
		func(rows driver.Rows) (s BucketSummary, err error) {
			err = rows.Scan(&s.Bucket, &s.Rows, &s.MaxInsertedAt, &s.UntilUS, &s.Schema)
			return s, err
		}, args...)
	if err != nil {
		return res, err
	}
	have := make(map[int64]BucketSummary, len(sealed))
	for _, s := range sealed {
		have[s.Bucket.Unix()] = s
	}
	var todo []BucketSummary
	for _, b := range raw {
		if b.all > b.Rows {
			res.Pending++
		}
		if b.Rows == 0 {
			continue
		}
		b.UntilUS = min(b.Bucket.Add(BucketSeconds*time.Second).UnixMicro(), w)
		s, ok := have[b.Bucket.Unix()]
		switch {
		case !ok:
			res.Sealed++
		case s.Rows != b.Rows || !s.MaxInsertedAt.Equal(b.MaxInsertedAt) || s.Schema < SealSchema:
			res.Resealed++
		default:
			continue
		}
		todo = append(todo, b.BucketSummary)
		res.Rows += b.Rows
	}
	for len(todo) > 0 {
		n, rows := 0, uint64(0)
		for n < len(todo) && (n == 0 || rows+todo[n].Rows <= maxSealRows) {
			rows += todo[n].Rows
			n++
		}
		if err := seal(ctx, conn, database, launchID, todo[:n], w, now); err != nil {
			return res, err
		}
		todo = todo[n:]
	}
	return res, nil
}

// seal aggregates buckets (sorted) into a new version and records them.
func seal(ctx context.Context, conn driver.Conn, database, launchID string, buckets []BucketSummary, w int64, now time.Time) error {
	version := uint64(time.Now().UnixNano())
	list := make([]uint32, len(buckets))
	for i, b := range buckets {
		list[i] = uint32(b.Bucket.Unix())
	}
	src := dedupSource(database, "ts >= toDateTime(@lo) AND ts < toDateTime(@hi) AND received_at_us < @w AND has(@buckets, toUInt32(toStartOfMinute(ts)))", false)
	args := []any{clickhouse.Named("launch", launchID), clickhouse.Named("version", version), clickhouse.Named("w", w),
		clickhouse.Named("lo", list[0]), clickhouse.Named("hi", list[len(list)-1]+BucketSeconds), clickhouse.Named("buckets", list)}
	for _, a := range aggregates {
		q := fmt.Sprintf("INSERT INTO %s.%s (launch_id, bucket, version, %s) SELECT @launch, bucket, @version, %s FROM (%s)",
			database, a.table, a.columns, a.selected, fmt.Sprintf(a.groups, src))
		if err := conn.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("seal %d buckets of launch %s into %s: %w", len(buckets), launchID, a.table, err)
		}
	}
	// The seals are written last: a bucket's aggregates of this version
	// are complete before any reader uses them.
	type sealRow struct{ BucketSummary }
	rows := make([]sealRow, len(buckets))
	for i, b := range buckets {
		rows[i] = sealRow{b}
	}
	return insertBatch(ctx, conn, database, "seals", "launch_id, bucket, version, raw_rows, max_inserted_at, until_us, sealed_at, schema", "seals", rows,
		func(r *sealRow) (string, []any) {
			return r.Bucket.String(), []any{launchID, r.Bucket, version, r.Rows, r.MaxInsertedAt, r.UntilUS, now.UTC(), uint16(SealSchema)}
		})
}

// ScanAll runs a query and scans each row; errors name the query. The
// reporter's queries use it too.
func ScanAll[T any](ctx context.Context, conn driver.Conn, name, query string, scan func(driver.Rows) (T, error), args ...any) ([]T, error) {
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s query: %w", name, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s query: %w", name, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s query: %w", name, err)
	}
	return out, nil
}

// A View fixes what a reader sees of a launch: the seals up to Version
// and the watermark UntilUS they reach (read once, so the several queries
// of one report agree), and the pairs received from FromUS on (Unix
// microseconds; 0 for the whole history).
type View struct {
	LaunchID string
	Version  uint64
	UntilUS  int64
	FromUS   int64
}

// NewView reads the launch's latest seal version and watermark.
func NewView(ctx context.Context, conn driver.Conn, database, launchID string, fromUS int64) (View, error) {
	v := View{LaunchID: launchID, FromUS: fromUS}
	if err := conn.QueryRow(ctx, "SELECT max(version), max(until_us) FROM "+database+".seals WHERE launch_id = @launch",
		clickhouse.Named("launch", launchID)).Scan(&v.Version, &v.UntilUS); err != nil {
		return v, fmt.Errorf("seal version query: %w", err)
	}
	return v, nil
}

func (v View) args() []any {
	sealedFrom, minus := v.edge()
	// The raw rows of the minute holding FromUS, when its seal is not
	// used, are those received before the minute's end.
	edgeHi := v.FromUS
	if width := int64(BucketSeconds * 1_000_000); !minus && v.FromUS%width != 0 {
		edgeHi = v.FromUS - v.FromUS%width + width
	}
	// A lower bound of the raw rows' ts (the second of received_at_us):
	// ClickHouse skips the parts whose ts are all older (ts is the
	// partition key, so each part knows its range), which keeps the tail's
	// cost to the recent parts on a long launch.
	// The tail and the edge minute are read as two ranges, each bounded on
	// ts, so neither makes ClickHouse read the parts between them.
	return []any{clickhouse.Named("launch", v.LaunchID), clickhouse.Named("max_version", v.Version), clickhouse.Named("from_us", v.FromUS),
		clickhouse.Named("until_us", v.UntilUS), clickhouse.Named("sealed_from_us", sealedFrom), clickhouse.Named("edge_hi_us", edgeHi),
		clickhouse.Named("tail_s", max(v.UntilUS, v.FromUS)/1_000_000), clickhouse.Named("from_s", v.FromUS/1_000_000),
		clickhouse.Named("edge_hi_s", edgeHi/1_000_000), clickhouse.Named("sealed_from_s", sealedFrom/1_000_000)}
}

// edge says how the view treats the minute holding FromUS when it starts
// inside one: its raw rows from FromUS on are read (the default), or, when
// FromUS is in the minute's first half and the minute is sealed whole, its
// seal is used and the raw rows before FromUS are subtracted (minus), so
// at most half a minute of raw rows is read. sealedFrom is where the
// sealed buckets used start.
func (v View) edge() (sealedFrom int64, minus bool) {
	const width = BucketSeconds * 1_000_000
	start := v.FromUS - v.FromUS%width
	if v.FromUS > start && v.FromUS-start < width/2 && start+width <= v.UntilUS {
		return start, true
	}
	return v.FromUS, false
}

// union is the rows of an aggregate within the view: the sealed buckets
// starting at or after FromUS (each its latest version), and the same
// aggregation over the comparison rows received from FromUS on that are
// past the watermark (not sealed yet) or in the bucket holding FromUS
// (which starts before it, so its seal does not count), as two ranges.
// The raw rows are chosen on received_at_us with integer compares, after
// bounds on ts that let ClickHouse skip the parts outside them (ts is the
// partition key: each part knows its range; a part merged across the
// range is still read).
func (v View) union(database string, a aggregate) string {
	sealedSet := "SELECT bucket, max(version) FROM " + database + ".seals WHERE launch_id = @launch AND version <= @max_version GROUP BY bucket"
	sealed := "SELECT " + a.columns + " FROM " + database + "." + a.table + " WHERE launch_id = @launch AND toInt64(bucket) * 1000000 >= @sealed_from_us" +
		" AND (bucket, version) GLOBAL IN (" + sealedSet + ")" // GLOBAL: read once, on a cluster too (cluster.go)
	tail := "SELECT " + a.selected + " FROM (" + fmt.Sprintf(a.groups, dedupSource(database,
		"ts >= toDateTime(@tail_s) AND received_at_us >= @from_us AND received_at_us >= @until_us", true)) + ")"
	edge := "SELECT " + a.selected + " FROM (" + fmt.Sprintf(a.groups, dedupSource(database,
		"ts >= toDateTime(@from_s) AND ts <= toDateTime(@edge_hi_s) AND received_at_us >= @from_us AND received_at_us < @edge_hi_us AND received_at_us < @until_us", true)) + ")"
	return "(" + sealed + " UNION ALL " + tail + " UNION ALL " + edge + ")"
}

// minus is the aggregation of the raw rows the view subtracts (see edge):
// those of the sealed minute holding FromUS received before it.
func (v View) minus(database string, a aggregate) string {
	cols, sel := strings.Split(a.columns, ", "), strings.Split(a.selected, ", ")
	for i := range sel {
		if sel[i] != cols[i] {
			sel[i] += " AS " + cols[i]
		}
	}
	return "(SELECT " + strings.Join(sel, ", ") + " FROM (" + fmt.Sprintf(a.groups, dedupSource(database,
		"ts >= toDateTime(@sealed_from_s) AND ts <= toDateTime(@from_s) AND received_at_us >= @sealed_from_us AND received_at_us < @from_us", true)) + "))"
}

// PairGroup is pairs of a route and method that share their mismatch
// status, diff class and real (not per-request noise) generalized paths.
type PairGroup struct {
	Route, Method string
	// RawMismatch: the shadow answered and something differed.
	RawMismatch bool
	Fingerprint string
	// RealPaths are the generalized paths of the differences that were
	// not noise in their request (sorted); NoPaths a raw mismatch without
	// recorded paths.
	RealPaths []string
	NoPaths   bool
	Compared, ShadowErrors, ShadowFailures, PrimaryErrors, WithSecondary,
	Answered, Slower, Faster, Tied uint64
	// SecSlower, SecFaster and SecTied compare the shadow's latency with
	// the secondary's on the pairs both answered.
	SecSlower, SecFaster, SecTied uint64
	FirstUS, LastUS               int64
	// DiffSet is the class's "path\tkind" set (when HasDiffSet).
	DiffSet    []string
	HasDiffSet bool
}

// PairGroups reads the view's pair groups.
//
// For a window starting in a minute's first half the counts are exact,
// but FirstUS and LastUS are those of the whole first minute (see edge).
func PairGroups(ctx context.Context, conn driver.Conn, database string, v View) ([]PairGroup, error) {
	a := aggregates[0]
	read := func(src string) ([]PairGroup, error) {
		q := "SELECT route, method, raw_mismatch, fingerprint, real_paths, no_paths, sum(compared), sum(shadow_errors), sum(shadow_failures), " +
			"sum(primary_errors), sum(with_secondary), sum(answered), sum(slower), sum(faster), sum(tied), min(first_us), max(last_us), " +
			"anyIf(diffset, has_diffset = 1), max(has_diffset), sum(sec_slower), sum(sec_faster), sum(sec_tied) FROM " + src +
			" GROUP BY route, method, raw_mismatch, fingerprint, real_paths, no_paths"
		return ScanAll(ctx, conn, "pair groups", q, func(rows driver.Rows) (g PairGroup, err error) {
			var rm, np, hd uint8
			err = rows.Scan(&g.Route, &g.Method, &rm, &g.Fingerprint, &g.RealPaths, &np, &g.Compared, &g.ShadowErrors, &g.ShadowFailures,
				&g.PrimaryErrors, &g.WithSecondary, &g.Answered, &g.Slower, &g.Faster, &g.Tied, &g.FirstUS, &g.LastUS, &g.DiffSet, &hd,
				&g.SecSlower, &g.SecFaster, &g.SecTied)
			g.RawMismatch, g.NoPaths, g.HasDiffSet = rm == 1, np == 1, hd == 1
			return g, err
		}, v.args()...)
	}
	key := func(g *PairGroup) string {
		return fmt.Sprintf("%s\x00%s\x00%v\x00%s\x00%q\x00%v", g.Route, g.Method, g.RawMismatch, g.Fingerprint, g.RealPaths, g.NoPaths)
	}
	return windowed(v, database, a, read, key, func(g, m *PairGroup) {
		g.Compared -= min(g.Compared, m.Compared)
		g.ShadowErrors -= min(g.ShadowErrors, m.ShadowErrors)
		g.ShadowFailures -= min(g.ShadowFailures, m.ShadowFailures)
		g.PrimaryErrors -= min(g.PrimaryErrors, m.PrimaryErrors)
		g.WithSecondary -= min(g.WithSecondary, m.WithSecondary)
		g.Answered -= min(g.Answered, m.Answered)
		g.Slower -= min(g.Slower, m.Slower)
		g.Faster -= min(g.Faster, m.Faster)
		g.Tied -= min(g.Tied, m.Tied)
		g.SecSlower -= min(g.SecSlower, m.SecSlower)
		g.SecFaster -= min(g.SecFaster, m.SecFaster)
		g.SecTied -= min(g.SecTied, m.SecTied)
	}, func(g *PairGroup) bool { return g.Compared > 0 })
}

// windowed reads a view's groups from the union of aggregate a and, when
// the window starts inside a minute (see edge), subtracts from each group
// what the minus part holds under the same key, then leaves out the groups
// that count nothing. A minus group without its union group is a late row
// not sealed yet: ignored.
func windowed[T any, K comparable](v View, database string, a aggregate, read func(src string) ([]T, error),
	key func(*T) K, subtract func(g, m *T), counts func(*T) bool) ([]T, error) {
	groups, err := read(v.union(database, a))
	if _, minus := v.edge(); err != nil || !minus {
		return groups, err
	}
	sub, err := read(v.minus(database, a))
	if err != nil {
		return nil, err
	}
	at := make(map[K]int, len(groups))
	for i := range groups {
		at[key(&groups[i])] = i
	}
	for j := range sub {
		if i, ok := at[key(&sub[j])]; ok {
			subtract(&groups[i], &sub[j])
		}
	}
	out := groups[:0]
	for i := range groups {
		if counts(&groups[i]) {
			out = append(out, groups[i])
		}
	}
	return out, nil
}

// DiffGroup counts the differences at one route, generalized path and
// kind: Diffs over the pairs the shadow answered, SecDiffs over the raw
// mismatches the secondary answered, each with how many were noise in
// their request.
type DiffGroup struct {
	Route, Path, Kind                     string
	Diffs, DiffsNoisy, SecDiffs, SecNoisy uint64
}

// DiffGroups reads the view's difference counts. The view must be of the
// whole history (FromUS 0): they are not subtracted at a window's edge.
func DiffGroups(ctx context.Context, conn driver.Conn, database string, v View) ([]DiffGroup, error) {
	if _, minus := v.edge(); minus {
		return nil, fmt.Errorf("diff groups of a window starting at %d: not supported", v.FromUS)
	}
	q := "SELECT route, gpath, kind, sum(diffs), sum(diffs_noisy), sum(sec_diffs), sum(sec_noisy) FROM " + v.union(database, aggregates[1]) +
		" GROUP BY route, gpath, kind"
	return ScanAll(ctx, conn, "diff groups", q, func(rows driver.Rows) (g DiffGroup, err error) {
		err = rows.Scan(&g.Route, &g.Path, &g.Kind, &g.Diffs, &g.DiffsNoisy, &g.SecDiffs, &g.SecNoisy)
		return g, err
	}, v.args()...)
}

// HistBin is how many latencies of a route, method and side fell in one
// bin, and their sum; Answered says whether the shadow answered those
// pairs.
type HistBin struct {
	Route, Method, Side string
	Answered            bool
	Bin                 uint16
	Count
}

// Count is the number and the sum (µs) of the latencies in a bin.
type Count struct{ N, SumUS uint64 }

// Histograms reads the view's latency histograms (sides primary and
// shadow).
func Histograms(ctx context.Context, conn driver.Conn, database string, v View) ([]HistBin, error) {
	return histograms(ctx, conn, database, v, aggregates[2])
}

// SecondaryHistograms reads the view's latency histograms of the pairs
// the secondary answered (sides secondary and shadow; see
// secondaryHistDDL).
func SecondaryHistograms(ctx context.Context, conn driver.Conn, database string, v View) ([]HistBin, error) {
	return histograms(ctx, conn, database, v, aggregates[3])
}

func histograms(ctx context.Context, conn driver.Conn, database string, v View, a aggregate) ([]HistBin, error) {
	read := func(src string) ([]HistBin, error) {
		q := "SELECT route, method, toString(side), answered, bin, sum(n), sum(sum_us) FROM " + src +
			" GROUP BY route, method, side, answered, bin"
		return ScanAll(ctx, conn, "latency histograms", q, func(rows driver.Rows) (h HistBin, err error) {
			var a uint8
			err = rows.Scan(&h.Route, &h.Method, &h.Side, &a, &h.Bin, &h.N, &h.SumUS)
			h.Answered = a == 1
			return h, err
		}, v.args()...)
	}
	type k struct {
		route, method, side string
		answered            bool
		bin                 uint16
	}
	return windowed(v, database, a, read, func(h *HistBin) k { return k{h.Route, h.Method, h.Side, h.Answered, h.Bin} },
		func(h, m *HistBin) {
			h.N -= min(h.N, m.N)
			h.SumUS -= min(h.SumUS, m.SumUS)
		}, func(h *HistBin) bool { return h.N > 0 })
}

// Histogram accumulates latency bins and answers quantiles.
type Histogram map[uint16]Count

// Add counts a bin.
func (h Histogram) Add(bin uint16, c Count) {
	cur := h[bin]
	h[bin] = Count{cur.N + c.N, cur.SumUS + c.SumUS}
}

// Quantile is the latency (µs) of rank ceil(q*n) of the n latencies (the
// nearest rank, as ClickHouse's quantileExactWeighted counts it), given as
// the mean of the latencies in its bin: within 1% of the exact value, and
// exact when the bin holds one distinct latency. 0 when empty.
func (h Histogram) Quantile(q float64) float64 {
	var total uint64
	bins := make([]uint16, 0, len(h))
	for b, c := range h {
		total += c.N
		bins = append(bins, b)
	}
	if total == 0 {
		return 0
	}
	slices.Sort(bins)
	threshold := uint64(math.Ceil(q * float64(total)))
	var acc uint64
	for _, b := range bins {
		acc += h[b].N
		if acc >= threshold {
			return float64(h[b].SumUS) / float64(h[b].N)
		}
	}
	c := h[bins[len(bins)-1]]
	return float64(c.SumUS) / float64(c.N)
}
