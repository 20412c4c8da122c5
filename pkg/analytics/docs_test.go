package analytics

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// docs/clickhouse.md is the analysts' contract: every column of the real
// table is documented, and every example query runs on the server the tests
// use (ClickHouse 18.16 here).
func TestSchemaDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/clickhouse.md")
	if err != nil {
		t.Fatalf("read the schema docs: %v", err)
	}
	ctx, conn := openTestDB(t, "darklaunch", 1)
	rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = 'darklaunch' AND table IN ('comparisons', 'examples', 'seals', 'pair_counts', 'diff_counts', 'latency_hist', 'secondary_latency_hist', 'comparisons_by_time', 'schema_marks')")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		n++
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("column %s is not documented in docs/clickhouse.md", name)
		}
	}
	if n < 90 {
		t.Fatalf("found %d columns, the table was not created", n)
	}
	_, examples, ok := strings.Cut(string(doc), "## Example queries")
	if !ok {
		t.Fatal("docs/clickhouse.md has no example queries section")
	}
	queries := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(examples, -1)
	if len(queries) < 8 {
		t.Fatalf("found %d example queries, want at least 2", len(queries))
	}
	for _, q := range queries {
		sql := strings.ReplaceAll(q[1], "<launch id>", "l1")
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			t.Errorf("example query fails: %v\n%s", err, sql)
			continue
		}
		rows.Close()
	}
}
