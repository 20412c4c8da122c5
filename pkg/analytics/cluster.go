package analytics

// The cluster form of the schema (CLICKHOUSE_CLUSTER): every statement of
// Migrate is rewritten, whatever table it creates, so a table added later
// gets the cluster form without code of its own.
//
//   - CREATE DATABASE gains ON CLUSTER.
//   - CREATE TABLE db.t (...) ENGINE = XMergeTree(args) ... becomes
//     db.t_local ON CLUSTER with ENGINE = ReplicatedXMergeTree(
//     '/clickhouse/tables/{shard}/db/t', '{replica}', args): the rows, each
//     shard's copy replicated through ZooKeeper. In front of it, once its
//     columns are final (after the added columns), db.t ON CLUSTER is a
//     Distributed table over db.t_local, sharded by a hash of t's sorting
//     key: rows that a ReplacingMergeTree collapses (same sorting key, e.g.
//     a pair stored twice) land on the same shard, where FINAL sees them
//     together, and one launch's rows spread over every shard.
//   - CREATE MATERIALIZED VIEW db.v TO db.t AS SELECT ... FROM db.s keeps
//     its name, gains ON CLUSTER and reads and writes the local tables, so
//     each shard aggregates its own inserts.
//
// Readers and writers keep using db.t: the Distributed table fans reads out
// to one replica of each shard and routes inserts by the sharding key.
// ClickHouse resolves {shard} and {replica} from each server's <macros>.
// ON CLUSTER needs the servers' <distributed_ddl> queue in ZooKeeper (or
// ClickHouse Keeper), which replication needs anyway.

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// localSuffix names the table that holds a shard's rows.
const localSuffix = "_local"

// clusterSchema rewrites Migrate's statements for a cluster. A nil
// *clusterSchema is the single-node schema: statements run as written.
type clusterSchema struct {
	database, cluster string
	// dist are the tables created so far, in order, each with its sharding
	// key: distribute puts a Distributed table in front of each.
	dist []distTable
}

type distTable struct{ name, key string }

// newClusterSchema is the schema of database on cluster; nil (single
// node) for an empty cluster.
func newClusterSchema(database, cluster string) (*clusterSchema, error) {
	if cluster == "" {
		return nil, nil
	}
	if !dbName.MatchString(cluster) {
		return nil, fmt.Errorf("clickhouse cluster name %q is not a plain identifier", cluster)
	}
	return &clusterSchema{database: database, cluster: cluster}, nil
}

// on is the ON CLUSTER clause of a statement ("" on a single node).
func (c *clusterSchema) on() string {
	if c == nil {
		return ""
	}
	return " ON CLUSTER " + c.cluster
}

// local is the table that holds table's rows: itself on a single node.
func (c *clusterSchema) local(table string) string {
	if c == nil {
		return table
	}
	return table + localSuffix
}

var (
	createDatabase = regexp.MustCompile(`(?is)^\s*CREATE\s+DATABASE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s*$`)
	createTable    = regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\.(\w+)\s*(\(.*)$`)
	engineClause   = regexp.MustCompile(`(?is)^\s*ENGINE\s*=\s*(\w+)`)
	createView     = regexp.MustCompile(`(?is)^\s*CREATE\s+MATERIALIZED\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\.(\w+)\s+TO\s+(\w+)\.(\w+)\s+(.*)$`)
	orderBy        = regexp.MustCompile(`(?is)\bORDER\s+BY\s+`)
	// clauseAfterOrder are the clauses that may follow ORDER BY in a
	// MergeTree definition.
	clauseAfterOrder = regexp.MustCompile(`(?is)\s(PRIMARY\s+KEY|SAMPLE\s+BY|TTL|SETTINGS)\s`)
)

// ErrClusterSchema wraps a statement the cluster form cannot rewrite.
var ErrClusterSchema = errors.New("clickhouse cluster schema")

// rewrite returns the statements that apply s: s itself on a single node.
func (c *clusterSchema) rewrite(s string) ([]string, error) {
	if c == nil {
		return []string{s}, nil
	}
	if m := createDatabase.FindStringSubmatch(s); m != nil {
		return []string{"CREATE DATABASE " + m[1] + m[2] + c.on()}, nil
	}
	if m := createTable.FindStringSubmatch(s); m != nil {
		return c.table(m[1], m[2], m[3], m[4])
	}
	if m := createView.FindStringSubmatch(s); m != nil {
		if m[2] != c.database || m[4] != c.database {
			return nil, fmt.Errorf("%w: view %s.%s: tables of another database", ErrClusterSchema, m[2], m[3])
		}
		target := m[5]
		if !c.known(target) {
			return nil, fmt.Errorf("%w: view %s.%s writes to %s, which Migrate did not create before it", ErrClusterSchema, m[2], m[3], target)
		}
		// Every table of the database the SELECT names is read locally.
		refs := regexp.MustCompile(`\b` + regexp.QuoteMeta(c.database) + `\.(\w+)\b`)
		query := outsideQuotes(m[6], func(code string) string {
			return refs.ReplaceAllStringFunc(code, func(ref string) string {
				if name := ref[len(c.database)+1:]; c.known(name) {
					return c.database + "." + c.local(name)
				}
				return ref
			})
		})
		return []string{fmt.Sprintf("CREATE MATERIALIZED VIEW %s%s.%s%s TO %s.%s %s", m[1], m[2], m[3], c.on(), c.database, c.local(target), query)}, nil
	}
	return nil, fmt.Errorf("%w: no cluster form for the statement %.60q", ErrClusterSchema, s)
}

// known reports whether table was created by a rewritten statement.
func (c *clusterSchema) known(table string) bool {
	return slices.ContainsFunc(c.dist, func(d distTable) bool { return d.name == table })
}

// table rewrites CREATE TABLE [ifNot] db.name rest, rest starting with the
// column list.
func (c *clusterSchema) table(ifNot, db, name, rest string) ([]string, error) {
	if db != c.database {
		return nil, fmt.Errorf("%w: table %s.%s is not in database %s", ErrClusterSchema, db, name, c.database)
	}
	end := closing(rest)
	if end < 0 {
		return nil, fmt.Errorf("%w: table %s: unbalanced column list", ErrClusterSchema, name)
	}
	columns, rest := rest[:end+1], rest[end+1:]
	m := engineClause.FindStringSubmatchIndex(rest)
	if m == nil {
		return nil, fmt.Errorf("%w: table %s: no ENGINE clause", ErrClusterSchema, name)
	}
	engine, rest := rest[m[2]:m[3]], rest[m[1]:]
	var args string
	if trimmed := strings.TrimLeft(rest, " \t\n"); strings.HasPrefix(trimmed, "(") {
		rest = trimmed
		end := closing(rest)
		if end < 0 {
			return nil, fmt.Errorf("%w: table %s: unbalanced engine arguments", ErrClusterSchema, name)
		}
		args, rest = strings.TrimSpace(rest[1:end]), rest[end+1:]
	}
	if !strings.HasSuffix(engine, "MergeTree") {
		return nil, fmt.Errorf("%w: table %s: engine %s has no replicated form (a MergeTree engine is needed)", ErrClusterSchema, name, engine)
	}
	replicated := engine
	if !strings.HasPrefix(engine, "Replicated") {
		path := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", c.database, name)
		if args != "" {
			path += ", " + args
		}
		replicated, args = "Replicated"+engine, path
	}
	key, err := shardingKey(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: table %s: %w", ErrClusterSchema, name, err)
	}
	c.dist = append(c.dist, distTable{name, key})
	return []string{fmt.Sprintf("CREATE TABLE %s%s.%s%s %s ENGINE = %s(%s)%s",
		ifNot, db, c.local(name), c.on(), columns, replicated, args, rest)}, nil
}

// shardingKey is a hash of the sorting key of a MergeTree definition's
// clauses (the table's dedup key for the Replacing engines), rand() for a
// table sorted by tuple().
func shardingKey(clauses string) (string, error) {
	loc := orderBy.FindStringIndex(clauses)
	if loc == nil {
		return "", fmt.Errorf("no ORDER BY clause")
	}
	expr := clauses[loc[1]:]
	if m := clauseAfterOrder.FindStringIndex(expr); m != nil {
		expr = expr[:m[0]]
	}
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "(") && closing(expr) == len(expr)-1 {
		expr = strings.TrimSpace(expr[1 : len(expr)-1])
	}
	if expr == "" || strings.EqualFold(expr, "tuple()") {
		return "rand()", nil
	}
	return "cityHash64(" + expr + ")", nil
}

// closing is the index of the parenthesis that closes the one s starts
// with, skipping quoted strings; -1 when there is none.
func closing(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case isQuote(ch):
			i = quoteEnd(s, i)
		case ch == '(':
			depth++
		case ch == ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// outsideQuotes applies f to the parts of s outside quoted strings and
// identifiers.
func outsideQuotes(s string, f func(string) string) string {
	var b strings.Builder
	start := 0
	for i := 0; i < len(s); i++ {
		if !isQuote(s[i]) {
			continue
		}
		b.WriteString(f(s[start:i]))
		end := min(quoteEnd(s, i)+1, len(s))
		b.WriteString(s[i:end]) // the quoted part, as it is
		start, i = end, end-1
	}
	b.WriteString(f(s[start:]))
	return b.String()
}

func isQuote(ch byte) bool { return ch == '\'' || ch == '`' || ch == '"' }

// quoteEnd is the index of the quote that closes the one at s[i] (a
// backslash escapes the next character), or len(s) when none does.
func quoteEnd(s string, i int) int {
	q := s[i]
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case q:
			return i
		}
	}
	return len(s)
}

// distribute puts a Distributed table in front of each local table. One
// whose columns differ from its local table's (a column was added) is
// dropped and created again: ClickHouse 18.16 refuses ALTER ... ON CLUSTER
// on a Distributed table of a replicated cluster, and a Distributed table
// holds no rows (inserts are synchronous, see Open). A table of that name
// that is not Distributed (a single-node schema) is an error, never
// dropped.
func (c *clusterSchema) distribute(ctx context.Context, conn driver.Conn) error {
	if c == nil {
		return nil
	}
	for _, d := range c.dist {
		engine, err := c.engine(ctx, conn, d.name)
		if err != nil {
			return err
		}
		if engine != "" && engine != "Distributed" {
			return fmt.Errorf("%w: %s.%s exists as a %s table, not a Distributed one: a single-node schema does not become a cluster schema in place (docs/clickhouse.md, Cluster)",
				ErrClusterSchema, c.database, d.name, engine)
		}
		if engine != "" {
			same, err := c.sameColumns(ctx, conn, d.name)
			if err != nil || same {
				return err
			}
			if err := conn.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s%s", c.database, d.name, c.on())); err != nil {
				return fmt.Errorf("migrate clickhouse: drop the outdated Distributed table %s.%s: %w", c.database, d.name, err)
			}
		}
		if err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %[1]s.%[2]s%[3]s AS %[1]s.%[4]s ENGINE = Distributed(%[5]s, %[1]s, %[4]s, %[6]s)",
			c.database, d.name, c.on(), c.local(d.name), c.cluster, d.key)); err != nil {
			return fmt.Errorf("migrate clickhouse: create the Distributed table %s.%s: %w", c.database, d.name, err)
		}
	}
	return nil
}

// engine is the engine of database.table on the server conn reaches, ""
// when there is no such table.
func (c *clusterSchema) engine(ctx context.Context, conn driver.Conn, table string) (string, error) {
	engines, err := ScanAll(ctx, conn, "table engine", "SELECT engine FROM system.tables WHERE database = ? AND name = ?",
		func(rows driver.Rows) (e string, err error) {
			err = rows.Scan(&e)
			return e, err
		}, c.database, table)
	if err != nil || len(engines) == 0 {
		return "", err
	}
	return engines[0], nil
}

// sameColumns reports whether table and its local table have the same
// columns, names and types in order.
func (c *clusterSchema) sameColumns(ctx context.Context, conn driver.Conn, table string) (bool, error) {
	var cols [2][]string
	for i, t := range []string{table, c.local(table)} {
		var err error
		cols[i], err = ScanAll(ctx, conn, "columns", "SELECT concat(name, ' ', type) FROM system.columns WHERE database = ? AND table = ?",
			func(rows driver.Rows) (s string, err error) {
				err = rows.Scan(&s)
				return s, err
			}, c.database, t)
		if err != nil {
			return false, err
		}
	}
	return slices.Equal(cols[0], cols[1]), nil
}

var distributedEngine = regexp.MustCompile(`^Distributed\(\s*'?(\w+)'?\s*,\s*'?(\w+)'?\s*,\s*'?(\w+)'?`)

// partitionTable says where a table's partitions are: the table itself,
// listed from this server's system.parts; for a Distributed table (the
// cluster form), its local table on every server of its cluster, listed
// through cluster() and dropped ON CLUSTER.
type partitionTable struct {
	table, on, parts string
}

func partitionsOf(ctx context.Context, conn driver.Conn, database, table string) (partitionTable, error) {
	engines, err := ScanAll(ctx, conn, "table engine", "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?",
		func(rows driver.Rows) (e string, err error) {
			err = rows.Scan(&e)
			return e, err
		}, database, table)
	if err != nil {
		return partitionTable{}, err
	}
	if len(engines) == 1 {
		if m := distributedEngine.FindStringSubmatch(engines[0]); m != nil && m[2] == database {
			return partitionTable{table: m[3], on: " ON CLUSTER " + m[1], parts: "cluster('" + m[1] + "', system.parts)"}, nil
		}
	}
	return partitionTable{table: table, parts: "system.parts"}, nil
}
