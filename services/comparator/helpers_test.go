package comparator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// harness is a comparator under test with its JetStream and ClickHouse.
type harness struct {
	t    *testing.T
	ctx  context.Context
	ns   *testenv.JetStream
	nc   *nats.Conn
	js   jetstream.JetStream
	db   string
	ch   driver.Conn // for the test's own queries; nil until query is first used
	addr string      // ClickHouse native address
}

var nonIdent = regexp.MustCompile(`[^A-Za-z0-9_]+`)

func newHarness(t *testing.T, chAddr string) *harness {
	t.Helper()
	h := &harness{t: t, ctx: testenv.Context(t), ns: testenv.StartJetStream(t), addr: chAddr,
		db: "cmp_" + strings.ToLower(nonIdent.ReplaceAllString(t.Name(), "_"))}
	if len(h.db) > 60 {
		h.db = h.db[:60]
	}
	h.nc, h.js = testenv.Connect(t, h.ns.URL())
	return h
}

// config is a fast-flushing configuration pointing at the harness.
func (h *harness) config() Config { return h.configFor(h.ns.URL()) }

// configFor is config against another NATS server.
func (h *harness) configFor(natsURL string) Config {
	cfg := DefaultConfig()
	cfg.NATSURL = natsURL
	cfg.ClickHouseAddr = h.addr
	cfg.ClickHouseDatabase = h.db
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.BatchSize = 100
	cfg.FlushInterval = 100 * time.Millisecond
	cfg.InsertTimeout = 2 * time.Second
	cfg.RetryMax = 200 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg
}

// running is a comparator started by the harness.
type running struct {
	*Service
	*testenv.Running
}

// waitStats polls the comparator's counters until ok accepts them; after
// 10 s the test fails with the last counters seen and want.
func (r *running) waitStats(t *testing.T, want string, ok func(Stats) bool) {
	t.Helper()
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := r.Stats(); !ok(st) {
			return fmt.Errorf("stats %+v, want %s", st, want)
		}
		return nil
	})
}

// stop cancels Run and waits for it to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) start(cfg Config) *running {
	h.t.Helper()
	svc, err := New(cfg, testenv.Logger(h.t, slog.LevelDebug))
	if err != nil {
		h.t.Fatal(err)
	}
	return &running{Service: svc, Running: testenv.Run(h.t, svc.Run)}
}

// publish publishes a pair with its envelope id as Nats-Msg-Id (or msgID
// if given) and reports whether the stream took it as a duplicate.
func (h *harness) publish(p *envelope.Pair, msgID string) bool {
	h.t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		h.t.Fatal(err)
	}
	if msgID == "" {
		msgID = p.Envelope.ID
	}
	ack, err := h.js.Publish(h.ctx, stream.PairSubject(p.Envelope.LaunchID), data, jetstream.WithMsgID(msgID))
	if err != nil {
		h.t.Fatal(err)
	}
	return ack.Duplicate
}

// publishBatch publishes pairs of one launch as one pair batch, with the
// BatchID of their envelope ids as Nats-Msg-Id.
func (h *harness) publishBatch(pairs ...*envelope.Pair) {
	h.t.Helper()
	data, err := envelope.AppendPairBatch(nil, pairs)
	if err != nil {
		h.t.Fatal(err)
	}
	ids := make([]string, len(pairs))
	for i, p := range pairs {
		ids[i] = p.Envelope.ID
	}
	m := nats.NewMsg(stream.PairSubject(pairs[0].Envelope.LaunchID))
	m.Header.Set(envelope.BatchHeader, envelope.BatchVersion)
	m.Data = data
	if _, err := h.js.PublishMsg(h.ctx, m, jetstream.WithMsgID(envelope.BatchID(ids))); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) publishRaw(subject string, data []byte) {
	h.t.Helper()
	if _, err := h.js.Publish(h.ctx, subject, data); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) conn() driver.Conn {
	h.t.Helper()
	if h.ch == nil {
		conn, err := analytics.Open(h.ctx, analytics.Options{Addr: h.addr, Database: h.db, User: "default"})
		if err != nil {
			h.t.Fatal(err)
		}
		h.t.Cleanup(func() { conn.Close() })
		h.ch = conn
	}
	return h.ch
}

// count returns the number of rows of a launch, collapsed (FINAL) or raw.
func (h *harness) count(launchID string, final bool) (uint64, error) {
	q := fmt.Sprintf("SELECT count() FROM %s.comparisons", h.db)
	if final {
		q += " FINAL"
	}
	var n uint64
	err := h.conn().QueryRow(h.ctx, q+" WHERE launch_id = ?", launchID).Scan(&n)
	return n, err
}

// waitRows waits until the launch has exactly n rows with FINAL.
func (h *harness) waitRows(launchID string, n uint64) {
	h.t.Helper()
	testenv.CheckFor(h.t, 30*time.Second, 50*time.Millisecond, func() error {
		got, err := h.count(launchID, true)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d rows for launch %s, want %d", got, launchID, n)
		}
		return nil
	})
}

// storedRow is the part of a comparisons row the tests check.
type storedRow struct {
	Route, Path, Method, TapID          string
	PrimaryStatus, ShadowStatus         uint16
	PrimaryLatency, ShadowLatency       uint64
	Match, StatusMatch, CTMatch, BMatch uint8
	ShadowError, ShadowErrorKind, Note  string
	DiffPaths, DiffKinds                []string
	ReceivedAtUS                        int64
	TS                                  time.Time
}

func (h *harness) row(envelopeID string) storedRow {
	h.t.Helper()
	var r storedRow
	err := h.conn().QueryRow(h.ctx, fmt.Sprintf(`SELECT route, path, method, tap_id, primary_status, shadow_status,
		primary_latency_us, shadow_latency_us, match, status_match, content_type_match, body_match,
		shadow_error, shadow_error_kind, compare_note, diff_paths, diff_kinds, received_at_us, ts
		FROM %s.comparisons FINAL WHERE envelope_id = ?`, h.db), envelopeID).Scan(
		&r.Route, &r.Path, &r.Method, &r.TapID, &r.PrimaryStatus, &r.ShadowStatus,
		&r.PrimaryLatency, &r.ShadowLatency, &r.Match, &r.StatusMatch, &r.CTMatch, &r.BMatch,
		&r.ShadowError, &r.ShadowErrorKind, &r.Note, &r.DiffPaths, &r.DiffKinds, &r.ReceivedAtUS, &r.TS)
	if err != nil {
		h.t.Fatalf("row %s: %v", envelopeID, err)
	}
	return r
}

// consumerInfo reads the comparator's durable consumer.
func (h *harness) consumerInfo() *jetstream.ConsumerInfo {
	h.t.Helper()
	c, err := h.js.Consumer(h.ctx, stream.PairsStream, stream.ComparatorConsumer)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := c.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return info
}

// streamMsgs is how many messages a stream holds.
func (h *harness) streamMsgs(name string) uint64 {
	h.t.Helper()
	n, err := testenv.StreamMsgs(h.ctx, h.js, name)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func waitReady(t *testing.T, r *running) {
	t.Helper()
	select {
	case <-r.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("comparator not ready within 30s")
	}
}
