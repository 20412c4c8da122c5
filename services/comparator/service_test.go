package comparator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPairsBecomeRows publishes a mix of pairs (over several batches) and
// checks each ends as exactly one row with the right columns.
func TestPairsBecomeRows(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	r := h.start(h.config())
	waitReady(t, r)

	const launch = "l-rows"
	match := newPair(launch, envelope.NewID(), "/users/42", 200, `{"user":{"id":42,"email":"a@x.io"}}`, 200, `{"user":{"email":"a@x.io","id":42.0}}`)
	email := newPair(launch, envelope.NewID(), "/users/43/", 200, `{"user":{"id":43,"email":"a@x.io"}}`, 200, `{"user":{"id":43,"email":"b@x.io"}}`)
	status := newPair(launch, envelope.NewID(), "/orders/3f2504e0-4f89-11d3-9a0c-0305e82c3301", 200, `{"ok":true}`, 500, `{"ok":true}`)
	failed := newPair(launch, envelope.NewID(), "/slow", 200, `{}`, 0, "")
	failed.Shadow = envelope.Outcome{Response: envelope.Response{LatencyUS: 10_000_000}, Error: "context deadline exceeded", ErrorKind: envelope.ErrorTimeout}
	html := newPair(launch, envelope.NewID(), "/", 200, "", 200, "")
	html.Envelope.Request.Method = "POST"
	html.Envelope.Primary.Headers.Set("Content-Type", "text/html")
	html.Envelope.Primary.Body = []byte("<p>a</p>")
	html.Shadow.Headers.Set("Content-Type", "text/html; charset=utf-8")
	html.Shadow.Body = []byte("<p>b</p>")
	pairs := []*envelope.Pair{match, email, status, failed, html}
	for i := range 245 { // 250 pairs: three batches of at most 100
		pairs = append(pairs, newPair(launch, envelope.NewID(), fmt.Sprintf("/items/%d", i), 200, `[1,2]`, 200, `[1,2]`))
	}
	for _, p := range pairs {
		if h.publish(p, "") {
			t.Fatalf("pair %s taken for a duplicate", p.Envelope.ID)
		}
	}
	h.waitRows(launch, uint64(len(pairs)))

	got := h.row(match.Envelope.ID)
	want := storedRow{Route: "/users/{id}", Path: "/users/42", Method: "GET", TapID: "tap-1", PrimaryStatus: 200, ShadowStatus: 200,
		PrimaryLatency: 1500, ShadowLatency: 4500, Match: 1, StatusMatch: 1, CTMatch: 1, BMatch: 1,
		DiffPaths: []string{}, DiffKinds: []string{}, ReceivedAtUS: testTime.UnixMicro(), TS: testTime.Truncate(time.Second)}
	if !got.TS.Equal(want.TS) {
		t.Errorf("ts = %s, want %s", got.TS, want.TS)
	}
	got.TS = want.TS
	if !reflect.DeepEqual(got, want) {
		t.Errorf("matching pair:\n got %+v\nwant %+v", got, want)
	}

	got = h.row(email.Envelope.ID)
	if got.Match != 0 || got.StatusMatch != 1 || got.BMatch != 0 || got.Route != "/users/{id}" || got.Path != "/users/43/" ||
		!reflect.DeepEqual(got.DiffPaths, []string{"$.user.email"}) || !reflect.DeepEqual(got.DiffKinds, []string{"value_changed"}) {
		t.Errorf("email pair: %+v", got)
	}
	got = h.row(status.Envelope.ID)
	if got.Match != 0 || got.StatusMatch != 0 || got.BMatch != 1 || got.PrimaryStatus != 200 || got.ShadowStatus != 500 ||
		got.Route != "/orders/{id}" || !reflect.DeepEqual(got.DiffPaths, []string{"status"}) || !reflect.DeepEqual(got.DiffKinds, []string{"status"}) {
		t.Errorf("status pair: %+v", got)
	}
	got = h.row(failed.Envelope.ID)
	if got.Match != 0 || got.ShadowStatus != 0 || got.ShadowError != "context deadline exceeded" || got.ShadowErrorKind != "timeout" ||
		got.ShadowLatency != 10_000_000 || len(got.DiffPaths) != 0 || got.StatusMatch != 0 || got.BMatch != 0 {
		t.Errorf("failed shadow: %+v", got)
	}
	got = h.row(html.Envelope.ID)
	if got.Match != 0 || got.Method != "POST" || got.CTMatch != 1 || !reflect.DeepEqual(got.DiffPaths, []string{"$"}) ||
		!reflect.DeepEqual(got.DiffKinds, []string{"body_text"}) {
		t.Errorf("html pair: %+v", got)
	}

	st := r.Stats()
	if st.Received != 250 || st.Inserted != 250 || st.Mismatches != 4 || st.Batches < 3 || st.DeadLettered != 0 || st.Duplicates != 0 {
		t.Errorf("stats %+v", st)
	}
	testenv.WaitStreamMsgs(t, h.js, stream.PairsStream, 0) // else acks are missing
	testenv.WantMetrics(t, r.AdminAddr(), "darklaunch_comparator_rows_inserted_total 250", "darklaunch_comparator_pairs_received_total 250",
		"darklaunch_comparator_mismatches_total 4", "darklaunch_comparator_batch_latency_seconds_count", "darklaunch_comparator_insert_failures_total 0")
	if code, rep := testenv.Health(t, r.AdminAddr()); code != http.StatusOK {
		t.Errorf("/healthz = %d %+v", code, rep)
	}
}

// TestDuplicates: a pair published twice with one Nats-Msg-Id is stored
// once by the stream; the same pair under other message ids (what a
// redelivery looks like) gives one row, whether the copies meet in one
// batch (deduplicated there) or in two (collapsed by FINAL).
func TestDuplicates(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	const launch = "l-dup"
	p := newPair(launch, envelope.NewID(), "/users/1", 200, `{"a":1}`, 200, `{"a":2}`)
	if h.publish(p, "") {
		t.Fatal("first publish taken for a duplicate")
	}
	if !h.publish(p, "") {
		t.Fatal("second publish with the same Nats-Msg-Id was stored again")
	}
	// Published before the comparator starts, so both land in its first batch.
	h.publish(p, "redelivered-1")
	r := h.start(h.config())
	h.waitRows(launch, 1)
	r.waitStats(t, "2 received, 1 duplicate, 1 inserted", func(st Stats) bool {
		return st.Received == 2 && st.Duplicates == 1 && st.Inserted == 1
	})

	// A copy arriving after the first was stored (a redelivery after a
	// lost ack) is known to have been stored by this process: acked, not
	// inserted again (issue 11: no duplicate rows after reconnects).
	h.publish(p, "redelivered-2")
	r.waitStats(t, "the second copy acked as a duplicate", func(st Stats) bool {
		return st.Received == 3 && st.Duplicates == 2 && st.Inserted == 1
	})
	h.waitRows(launch, 1)
	testenv.WaitStreamMsgs(t, h.js, stream.PairsStream, 0)
	if n, err := h.count(launch, false); err != nil || n != 1 {
		t.Errorf("%d raw rows (err %v), want 1", n, err)
	}
	// Another process that did not store it inserts it again, and reads
	// collapse the two rows by envelope id.
	r.stop(t)
	r2 := h.start(h.config())
	h.publish(p, "redelivered-3")
	r2.waitStats(t, "the copy inserted by a new process", func(st Stats) bool { return st.Inserted == 1 })
	h.waitRows(launch, 1)
	if got := h.row(p.Envelope.ID); !reflect.DeepEqual(got.DiffPaths, []string{"$.a"}) {
		t.Fatalf("row %+v", got)
	}
	testenv.WaitStreamMsgs(t, h.js, stream.PairsStream, 0) // else a duplicate was not acked
}

// TestMalformedDeadLettered: messages that are not valid pairs go to the
// dead-letter stream with the reason, are acked, and do not hold up the
// valid pairs around them.
func TestMalformedDeadLettered(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	const launch = "l-bad"
	subject := stream.PairSubject(launch)
	notJSON := []byte("not json")
	v2 := newPair(launch, envelope.NewID(), "/x", 200, "", 200, "")
	v2.V = 2
	v2Data, _ := json.Marshal(v2)
	future := newPair(launch, envelope.NewID(), "/x", 200, "", 200, "")
	future.Envelope.ReceivedAt = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	futureData, _ := json.Marshal(future)
	good1 := newPair(launch, envelope.NewID(), "/x", 200, "", 200, "")
	good2 := newPair(launch, envelope.NewID(), "/y", 200, "", 200, "")

	h.publish(good1, "")
	h.publishRaw(subject, notJSON)
	h.publishRaw(subject, v2Data)
	h.publishRaw(subject, futureData)
	h.publish(good2, "")
	r := h.start(h.config())
	h.waitRows(launch, 2)
	r.waitStats(t, "3 dead-lettered, 5 received, 2 inserted", func(st Stats) bool {
		return st.DeadLettered == 3 && st.Received == 5 && st.Inserted == 2
	})

	dl, err := h.js.Stream(h.ctx, stream.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := dl.GetMsg(h.ctx, seq)
		if err != nil {
			t.Fatalf("dead-letter message %d: %v", seq, err)
		}
		if m.Subject != stream.DeadLetterSubject(Stage) || m.Header.Get(stream.HeaderSubject) != subject {
			t.Errorf("dead-letter message on %s from %q", m.Subject, m.Header.Get(stream.HeaderSubject))
		}
		reasons[string(m.Data)] = m.Header.Get(stream.HeaderReason)
	}
	for data, want := range map[string]string{string(notJSON): "not valid JSON", string(v2Data): "pair version 2",
		string(futureData): "outside the range"} {
		if got, ok := reasons[data]; !ok || !strings.Contains(got, want) || !strings.Contains(got, "malformed") {
			t.Errorf("dead-lettered %.40q: reason %q (present %v), want it to mention %q", data, got, ok, want)
		}
	}
	if n := h.streamMsgs(stream.DeadLetterStream); n != 3 {
		t.Errorf("%d dead-lettered messages, want 3", n)
	}
	testenv.WaitStreamMsgs(t, h.js, stream.PairsStream, 0)
}

// TestClickHouseOutage kills ClickHouse while pairs keep coming: the
// comparator holds two batches (the one it inserts, the next one full)
// and one delivery per worker waiting for room, reads nothing more, keeps
// them alive past
// several ack deadlines so no other process gets it redelivered, and once
// ClickHouse is back every pair ends as exactly one row.
func TestClickHouseOutage(t *testing.T) {
	ch := testenv.NewClickHouse(t)
	ch.Start()
	h := newHarness(t, ch.Addr())
	cfg := h.config()
	cfg.BatchSize = 10
	cfg.Workers = 2
	cfg.FetchBatch = 1 // nothing pulled ahead: the held count is exact (pkg/stage tests what is pulled ahead)
	cfg.MaxAckPending = 100
	cfg.ackWaitOverride = 2 * time.Second
	r := h.start(cfg)
	waitReady(t, r)

	const launch = "l-outage"
	for range 5 {
		h.publish(newPair(launch, envelope.NewID(), "/a", 200, `{"a":1}`, 200, `{"a":1}`), "")
	}
	h.waitRows(launch, 5)
	// Rows are visible before the insert's answer reaches the comparator:
	// killing ClickHouse in between would make it retry an insert that
	// was stored (a clean-clone CI run saw the 5 rows twice).
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := r.Stats(); st.Inserted != 5 {
			return fmt.Errorf("%d of 5 rows inserted (answered)", st.Inserted)
		}
		return nil
	})

	ch.Stop()
	for i := range 25 {
		h.publish(newPair(launch, envelope.NewID(), "/b", 200, `{"a":1}`, 200, fmt.Sprintf(`{"a":%d}`, i)), "")
	}
	// Fail inserts for more than twice the ack deadline.
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if st := r.Stats(); st.InsertFailures < 25 {
			return fmt.Errorf("%d insert failures so far", st.InsertFailures)
		}
		return nil
	})
	if code, rep := testenv.Health(t, r.AdminAddr()); code != http.StatusServiceUnavailable || rep.Checks["clickhouse"] == "ok" || rep.Checks["nats"] != "ok" {
		t.Errorf("/healthz during the outage = %d %+v", code, rep)
	}
	const held = 2*10 + 2 // two batches, one delivery per worker
	if st := r.Stats(); st.Received != 5+held {
		t.Errorf("received %d pairs during the outage, want 5 + %d", st.Received, held)
	}
	info := h.consumerInfo()
	if info.NumAckPending != held || info.NumPending != 25-held || info.NumRedelivered != 0 {
		t.Errorf("consumer: %d ack pending, %d pending, %d redelivered; want %d, %d, 0", info.NumAckPending, info.NumPending, info.NumRedelivered, held, 25-held)
	}
	// Another process asking for work now must get only the pairs never
	// delivered, none of the 10 held ones (their deadline has passed
	// several times but was extended). It hands them back.
	cons, err := h.js.Consumer(h.ctx, stream.PairsStream, stream.ComparatorConsumer)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := cons.Fetch(100, jetstream.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Nak only after the fetch ended, or the probe would get its own
	// handed-back pairs again.
	var probed []jetstream.Msg
	for msg := range mb.Messages() {
		probed = append(probed, msg)
	}
	for _, msg := range probed {
		if md, err := msg.Metadata(); err != nil || md.NumDelivered != 1 || md.Sequence.Stream <= 5+held {
			t.Errorf("probe got a pair held by the comparator or redelivered (metadata %+v, %v)", md, err)
		}
		if err := msg.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	if len(probed) != 25-held {
		t.Errorf("probe got %d pairs, want the %d not held by the comparator", len(probed), 25-held)
	}

	ch.Start()
	h.waitRows(launch, 30)
	if n, err := h.count(launch, false); err != nil || n != 30 {
		t.Errorf("%d rows before collapsing (err %v), want 30: a pair was stored twice", n, err)
	}
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if st := r.Stats(); st.Inserted != 30 || st.Received != 30 {
			return fmt.Errorf("stats %+v, want 30 received and inserted", st)
		}
		if n := h.streamMsgs(stream.PairsStream); n != 0 {
			return fmt.Errorf("%d pairs still in the stream", n)
		}
		return nil
	})
	testenv.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if code, rep := testenv.Health(t, r.AdminAddr()); code != http.StatusOK {
			return fmt.Errorf("/healthz after the outage = %d %+v", code, rep)
		}
		return nil
	})
}

// TestStartsBeforeClickHouse: New binds the admin address without
// touching the dependencies, Run waits for ClickHouse with backoff, and
// pairs published meanwhile are stored once it is up.
func TestStartsBeforeClickHouse(t *testing.T) {
	ch := testenv.NewClickHouse(t)
	h := newHarness(t, ch.Addr())
	r := h.start(h.config())
	if code, rep := testenv.Health(t, r.AdminAddr()); code != http.StatusServiceUnavailable || rep.Checks["clickhouse"] == "ok" {
		t.Errorf("/healthz without ClickHouse = %d %+v", code, rep)
	}
	const launch = "l-late"
	for range 3 {
		h.publish(newPair(launch, envelope.NewID(), "/a", 200, "", 200, ""), "")
	}
	select {
	case <-r.Ready():
		t.Fatal("ready without ClickHouse")
	case <-time.After(300 * time.Millisecond):
	}
	ch.Start()
	waitReady(t, r)
	h.waitRows(launch, 3)
}

// TestGracefulShutdownFlushes: a partial batch that neither size nor
// interval would flush is stored and acked when Run is cancelled.
func TestGracefulShutdownFlushes(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	cfg := h.config()
	cfg.BatchSize = 1000
	cfg.FlushInterval = time.Hour
	r := h.start(cfg)
	waitReady(t, r)
	const launch = "l-shutdown"
	for range 7 {
		h.publish(newPair(launch, envelope.NewID(), "/a", 200, "", 200, ""), "")
	}
	var batch []*envelope.Pair
	for range 5 {
		batch = append(batch, newPair(launch, envelope.NewID(), "/b", 200, "", 200, ""))
	}
	h.publishBatch(batch...)
	r.waitStats(t, "8 deliveries received", func(st Stats) bool { return st.Received == 8 })
	if n, err := h.count(launch, true); err != nil || n != 0 {
		t.Fatalf("%d rows before shutdown (err %v): the batch should still be held", n, err)
	}
	// The pending gauge counts every pair held, those of the pair batch too.
	testenv.WantMetrics(t, r.AdminAddr(), "darklaunch_comparator_batch_pending_pairs 12")
	start := time.Now()
	r.stop(t)
	t.Logf("shutdown took %s", time.Since(start))
	if n, err := h.count(launch, true); err != nil || n != 12 {
		t.Fatalf("%d rows after shutdown (err %v), want 12", n, err)
	}
	if info := h.consumerInfo(); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("after shutdown: %d ack pending, %d pending: acks were not delivered", info.NumAckPending, info.NumPending)
	}
}

// TestBatchBytesBound: large pairs fill the byte budget before the count
// or the interval, and a pull never asks for more than is left of it, so
// big messages are neither refused for ever nor held in one huge batch.
func TestBatchBytesBound(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	cfg := h.config()
	cfg.BatchBytes = 1 << 20
	cfg.FlushInterval = time.Hour
	const launch = "l-big"
	body := `"` + strings.Repeat("x", 200<<10) + `"`
	for range 6 {
		h.publish(newPair(launch, envelope.NewID(), "/big", 200, body, 200, body), "")
	}
	r := h.start(cfg)
	h.waitRows(launch, 6)
	// The rows are visible a moment before the flusher counts its batch.
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := r.Stats(); st.Inserted != 6 {
			return fmt.Errorf("stats %+v: want 6 inserted", st)
		}
		return nil
	})
	if st := r.Stats(); st.Batches < 2 {
		t.Fatalf("stats %+v: want the six ~540 KB pairs split over several batches", st)
	}
}
