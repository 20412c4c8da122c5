package analytics

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/api"
)

// TestAudit runs against a real clickhouse-server: entries insert by named
// columns and read back newest first, to the microsecond, per launch and
// bounded; every column is documented in docs/clickhouse.md.
func TestAudit(t *testing.T) {
	ctx, conn := openTestDB(t, "dl_audit", 2)
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	entries := []api.AuditEntry{
		{LaunchID: "l1", TS: t0, Action: AuditCreated, ToStatus: "active", SamplePercent: 1, Actor: "api:127.0.0.1:5000", Reason: "deploy 42", Details: `{"ramp_step":0}`},
		// Same second, one microsecond later: ordered by ts_us.
		{LaunchID: "l1", TS: t0.Add(time.Microsecond), Action: AuditStepAdvanced, FromStatus: "active", ToStatus: "active", SamplePercent: 10, Actor: "controller:r1"},
		{LaunchID: "l1", TS: t0.Add(2 * time.Second), Action: AuditRolledBack, FromStatus: "active", ToStatus: "rolled_back", SamplePercent: 10, LivePercent: 0, Actor: "controller:r1", Reason: "mismatch_rate 0.2 > 0.01"},
		{LaunchID: "l2", TS: t0, Action: AuditCreated, ToStatus: "active", Actor: "api:x"},
	}
	if err := InsertAudit(ctx, conn, "dl_audit", entries); err != nil {
		t.Fatal(err)
	}
	if err := InsertAudit(ctx, conn, "dl_audit", nil); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAudit(ctx, conn, "dl_audit", "l1", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d entries of l1, want 3: %+v", len(got), got)
	}
	for i, want := range []api.AuditEntry{entries[2], entries[1], entries[0]} {
		g := got[i]
		if !g.TS.Equal(want.TS) || g.Action != want.Action || g.FromStatus != want.FromStatus || g.ToStatus != want.ToStatus ||
			g.SamplePercent != want.SamplePercent || g.Actor != want.Actor || g.Reason != want.Reason || g.Details != want.Details || g.LaunchID != "l1" {
			t.Errorf("entry %d = %+v, want %+v", i, g, want)
		}
	}
	got, err = ReadAudit(ctx, conn, "dl_audit", "l1", 1)
	if err != nil || len(got) != 1 || got[0].Action != AuditRolledBack {
		t.Fatalf("limit 1: %+v %v", got, err)
	}
	got, err = ReadAudit(ctx, conn, "dl_audit", "nobody", 10)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("unknown launch: %#v %v (want an empty, non-nil list)", got, err)
	}

	doc, err := os.ReadFile("../../docs/clickhouse.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Table `audit`")
	if !ok {
		t.Fatal("docs/clickhouse.md has no audit section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = 'dl_audit' AND table = 'audit'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		n++
		if !strings.Contains(section, "`"+name+"`") {
			t.Errorf("audit column %s is not documented in the audit section of docs/clickhouse.md", name)
		}
	}
	if n != 11 {
		t.Fatalf("audit has %d columns, want 11", n)
	}
}
