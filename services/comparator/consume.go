package comparator

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stage"
)

// msgOverhead approximates what a message costs beyond its payload
// (subject, reply subject, headers) in the batch's byte budget.
const msgOverhead = 4096

// The comparator's deliveries flow through two batches: Handle (up to
// COMPARATOR_WORKERS at once) compares a delivery's pairs and adds their
// rows to the batch being built, while the flusher inserts the batch
// before it. When the batch being built is full and the one before is
// still being inserted, Handle waits: the process then takes nothing
// more from the stream, so a ClickHouse outage holds two batches here and
// leaves the rest in the stream for other processes. A stored batch's
// deliveries are acked in one pass.

// batch is the rows collected for one insert and every delivery to ack
// once they are stored.
type batch struct {
	rows []analytics.Row
	msgs []*stage.Msg
	// pairs counts the pairs the batch accounts for (rows, and duplicates
	// acked with it).
	pairs int
	// examples are written after the rows, best-effort; claims are their
	// slots, freed again if the write fails.
	examples []analytics.Example
	claims   []claim
	ids      map[string]struct{}
	bytes    int
	// started is when the first delivery was added: a pair waits at most
	// FlushInterval from then.
	started time.Time
}

func newBatch(size int) *batch {
	return &batch{rows: make([]analytics.Row, 0, size), ids: make(map[string]struct{}, size)}
}

// claim is an example slot of a diff class.
type claim struct {
	key  string
	slot uint8
}

// compared is what Handle makes of one delivery: the rows of its pairs,
// with the examples of the first pairs of their diff classes.
type compared struct {
	rows     []analytics.Row
	examples []analytics.Example
	claims   []claim
}

// Handle compares one delivery (a single v1 pair, or a pair batch under
// envelope.BatchHeader) and adds its rows to the batch being built; the
// flush that stores them acks it. A message that is not a pair is
// dead-lettered; in a batch, each bad item alone.
func (s *Service) Handle(ctx context.Context, msg *stage.Msg) {
	pairs, ok := s.decode(ctx, msg)
	if !ok {
		return
	}
	// Pending from now (defect c of issue 11: pairs held while being
	// compared count too) until the batch holding their rows is acked;
	// those that end here (dead-lettered, or the delivery settled or
	// panicked on) stop counting when Handle returns.
	s.m.pending.Add(float64(len(pairs)))
	kept := 0
	defer func() { s.m.pending.Sub(float64(len(pairs) - kept)) }()
	c := compared{rows: make([]analytics.Row, 0, len(pairs))}
	for _, p := range pairs {
		if !s.compare(ctx, msg, p, &c) {
			return
		}
	}
	kept = len(c.rows)
	s.add(ctx, msg, &c)
}

// indexed is a decoded pair with its position in its batch (for the dead
// letter of that item alone; -1 for a single pair).
type indexed struct {
	*envelope.Pair
	index int
}

// decode reads a delivery's pairs; the bad items of a batch are
// dead-lettered alone. false: the delivery is settled.
func (s *Service) decode(ctx context.Context, msg *stage.Msg) ([]indexed, bool) {
	data := msg.Data()
	if msg.Header(envelope.BatchHeader) == "" {
		p, err := envelope.DecodePair(data)
		if err != nil {
			msg.DeadLetter(ctx, reasonMalformed, err)
			return nil, false
		}
		return []indexed{{p, -1}}, true
	}
	pairs, bad, err := envelope.DecodePairBatch(data)
	if err != nil {
		msg.DeadLetter(ctx, reasonMalformed, err)
		return nil, false
	}
	out := make([]indexed, 0, len(pairs))
	next := 0 // the next bad item
	for i, j := 0, 0; j < len(pairs); i++ {
		if next < len(bad) && bad[next].Index == i {
			if !s.rejectItem(ctx, msg, i, bad[next]) {
				return nil, false
			}
			next++
			continue
		}
		out = append(out, indexed{pairs[j], i})
		j++
	}
	for ; next < len(bad); next++ {
		if !s.rejectItem(ctx, msg, bad[next].Index, bad[next]) {
			return nil, false
		}
	}
	return out, true
}

// rejectItem dead-letters item i of a batch alone (as a batch of its own);
// when that fails the delivery is handed back and false returned.
func (s *Service) rejectItem(ctx context.Context, msg *stage.Msg, i int, cause error) bool {
	item, err := envelope.BatchItem(msg.Data(), i)
	if err == nil {
		err = msg.DeadLetterItem(ctx, reasonMalformed, item, cause)
	}
	if err != nil {
		msg.Retry(ctx, fmt.Errorf("dead-letter a batch item: %w", err))
		return false
	}
	s.countDeadLetterItem(msg)
	return true
}

// compare builds one pair's row under its launch's current rules and,
// when the pair is the first of its diff class to fall in a free example
// slot, its redacted example. A pair that cannot be stored is
// dead-lettered (alone in a batch). false: the delivery is settled.
func (s *Service) compare(ctx context.Context, msg *stage.Msg, p indexed, c *compared) bool {
	s.shared.Lock()
	rules, rev := s.rules.rules(ctx, p.Envelope.LaunchID)
	s.shared.Unlock()
	cmp := s.cmp
	cmp.Rules = rules
	row, err := s.buildRow(cmp, p.Pair)
	if err != nil {
		if p.index < 0 {
			msg.DeadLetter(ctx, reasonMalformed, err)
			return false
		}
		return s.rejectItem(ctx, msg, p.index, err)
	}
	row.RulesRevision = rev
	c.rows = append(c.rows, row)
	if row.Fingerprint != "" && len(c.examples) < maxExamplesPerBatch {
		cl := claim{key: classKey(row.LaunchID, row.Fingerprint), slot: ExampleSlot(row.EnvelopeID)}
		s.shared.Lock()
		free := s.slots.claim(cl.key, cl.slot)
		s.shared.Unlock()
		if free {
			c.examples = append(c.examples, BuildExample(p.Pair, &c.rows[len(c.rows)-1], rules))
			c.claims = append(c.claims, cl)
		}
	}
	return true
}

// add puts a compared delivery into the batch being built, waiting while
// that batch is full (until the flusher takes it, which it does once the
// insert before it ended). A row
// whose envelope id the batch holds already, or this process stored
// recently (a redelivery after an ack was lost), is not added again: the
// delivery is acked with the batch.
func (s *Service) add(ctx context.Context, msg *stage.Msg, c *compared) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.full(s.b) && !s.closing {
		s.cond.Wait() // for the flusher to take it
	}
	b := s.b
	if len(b.msgs) == 0 {
		b.started = time.Now()
		s.wake() // the flusher times the batch from now
	}
	b.msgs = append(b.msgs, msg)
	b.bytes += len(msg.Data()) + msgOverhead
	b.pairs += len(c.rows)
	dups := 0
	for i := range c.rows {
		id := c.rows[i].EnvelopeID
		if _, dup := b.ids[id]; dup || s.recent.has(id) {
			dups++
			continue
		}
		b.ids[id] = struct{}{}
		b.rows = append(b.rows, c.rows[i])
	}
	if dups > 0 {
		// Published twice outside the duplicate window, or redelivered:
		// one row, every delivery acked with the batch.
		s.m.duplicates.Add(float64(dups))
	}
	room := maxExamplesPerBatch - len(b.examples)
	if len(c.examples) > room {
		for _, cl := range c.claims[room:] {
			s.slots.release(cl.key, cl.slot)
		}
		c.examples, c.claims = c.examples[:room], c.claims[:room]
	}
	b.examples = append(b.examples, c.examples...)
	b.claims = append(b.claims, c.claims...)
	if s.full(b) {
		s.wake()
	}
}

// full reports whether a batch must be inserted now: by rows or bytes.
func (s *Service) full(b *batch) bool {
	return len(b.msgs) > 0 && (b.pairs >= s.cfg.BatchSize || s.budget-b.bytes < s.slack)
}

// wake tells the flusher to look at the batch being built.
func (s *Service) wake() {
	select {
	case s.due <- struct{}{}:
	default:
	}
}

// flushLoop is the flusher: it inserts the batch being built when it is
// full or its first pair has waited FlushInterval, while Handle fills the
// next one. It returns when ctx ends, leaving what it holds to Flush.
func (s *Service) flushLoop(ctx context.Context) {
	defer func() {
		// Handles waiting for room go on: the drain's Flush stores all.
		s.mu.Lock()
		s.closing = true
		s.cond.Broadcast()
		s.mu.Unlock()
		close(s.flusherDone)
	}()
	timer := time.NewTimer(s.cfg.FlushInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.due:
		case <-timer.C:
		}
		s.mu.Lock()
		b := s.b
		wait := s.cfg.FlushInterval
		if len(b.msgs) > 0 {
			wait -= time.Since(b.started)
		}
		if len(b.msgs) == 0 || (!s.full(b) && wait > 0) {
			s.mu.Unlock()
			timer.Reset(max(wait, time.Millisecond))
			continue
		}
		s.inserting, s.b = b, s.spare()
		s.cond.Broadcast()
		s.mu.Unlock()
		if !s.flush(ctx, b) {
			return // ctx ended: Flush stores s.inserting
		}
		s.done(b)
		timer.Reset(0)
	}
}

// spare is an empty batch for Handle to fill (the last stored one, reset,
// when there is one).
func (s *Service) spare() *batch {
	if b := s.free; b != nil {
		s.free = nil
		return b
	}
	return newBatch(s.cfg.BatchSize)
}

// done ends the insert of b: Handle may fill a full batch again.
func (s *Service) done(b *batch) {
	s.mu.Lock()
	s.inserting = nil
	b.reset()
	s.free = b
	s.cond.Broadcast()
	s.mu.Unlock()
}

// Flush stores, at the drain, what the flusher left: the batch it was
// inserting when Run's ctx ended, then the batch being built. Deliveries
// still held after it are handed back by the stage.
func (s *Service) Flush(ctx context.Context) {
	select {
	case <-s.flusherDone:
	case <-ctx.Done():
		return
	}
	s.mu.Lock()
	batches := []*batch{s.inserting, s.b}
	s.mu.Unlock()
	for _, b := range batches {
		if b == nil || len(b.msgs) == 0 {
			continue
		}
		if !s.flush(ctx, b) {
			return
		}
		b.reset()
	}
}

// flush inserts the batch, retrying with backoff until it succeeds or ctx
// is done, and acks every delivery of the batch after the insert
// succeeded. The stage keeps the held deliveries alive meanwhile, so they
// are not redelivered to another process during a ClickHouse outage.
func (s *Service) flush(ctx context.Context, b *batch) bool {
	bo := s.backoff()
	db := s.cfg.ClickHouseDatabase
	for attempt := 1; ; attempt++ {
		ch := s.ch.Get()
		ictx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
		start := time.Now()
		err := analytics.Insert(ictx, ch, db, b.rows)
		cancel()
		if err == nil {
			s.committed(b, time.Since(start))
			s.writeExamples(ctx, b.examples, b.claims)
			return true
		}
		s.m.insertFailures.Inc()
		if ctx.Err() != nil {
			return false
		}
		delay := bo.Next()
		s.log.Warn("inserting a batch failed; keeping it and retrying", "rows", len(b.rows), "attempt", attempt, "in", delay, "err", err)
		if !retry.Sleep(ctx, delay) {
			return false
		}
		// A ClickHouse that came back empty has no table: re-apply the
		// schema (a no-op when it exists) before the next attempt.
		mctx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
		if err := analytics.MigrateCluster(mctx, ch, db, s.cfg.ClickHouseCluster); err != nil {
			s.log.Debug("re-applying the schema failed", "err", err)
		}
		cancel()
	}
}

// committed records a stored batch's envelope ids as recently stored, acks
// its deliveries in one pass, and counts it. The stage holds an ack that
// cannot be sent (NATS down) and sends it after the reconnect; should a
// delivery come back anyway, its rows are recognized as stored (recent),
// not inserted again.
func (s *Service) committed(b *batch, took time.Duration) {
	s.recent.addAll(b.rows)
	for _, msg := range b.msgs {
		msg.Ack()
	}
	mismatches, withSecondary, noisy := 0, 0, 0
	for i := range b.rows {
		r := &b.rows[i]
		if !r.Match {
			mismatches++
		}
		if r.HasSecondary {
			withSecondary++
		}
		for _, n := range r.DiffNoise {
			if n {
				noisy++
			}
		}
	}
	s.m.inserted.Add(float64(len(b.rows)))
	s.m.batches.Inc()
	s.m.mismatches.Add(float64(mismatches))
	s.m.withSecondary.Add(float64(withSecondary))
	s.m.noisyDiffs.Add(float64(noisy))
	s.m.insertDuration.Observe(took.Seconds())
	s.m.batchLatency.Observe(time.Since(b.started).Seconds())
	s.m.pending.Sub(float64(b.pairs))
	s.log.Debug("batch stored", "rows", len(b.rows), "messages", len(b.msgs), "took", took)
}

func (b *batch) reset() {
	// Clearing drops the references to message data and diff slices.
	clear(b.rows)
	clear(b.msgs)
	clear(b.ids)
	b.rows, b.msgs, b.bytes, b.pairs = b.rows[:0], b.msgs[:0], 0, 0
	b.examples, b.claims = nil, nil
}

// writeExamples stores a batch's examples once its rows are stored and
// acked. It makes one attempt: examples are illustrations, and retrying
// them must not hold up the rows. A failed write frees its slots, so later
// pairs of the same classes fill them.
func (s *Service) writeExamples(ctx context.Context, examples []analytics.Example, claims []claim) {
	if len(examples) == 0 {
		return
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.InsertTimeout)
	err := analytics.InsertExamples(ictx, s.ch.Get(), s.cfg.ClickHouseDatabase, examples)
	cancel()
	if err != nil {
		s.m.exampleFailures.Inc()
		s.shared.Lock()
		for _, c := range claims {
			s.slots.release(c.key, c.slot)
		}
		s.shared.Unlock()
		s.log.Warn("writing example pairs failed; their slots stay free for later pairs", "examples", len(examples), "err", err)
		return
	}
	s.m.examples.Add(float64(len(examples)))
}

// recentIDs remembers the envelope ids this process stored lately, in two
// generations of at most max ids (hashed): a redelivered pair whose row is
// already stored (its ack was lost with a reconnect, or came too late) is
// acked without a second row. Bounded, so an old enough repeat can still
// be stored again; reads collapse those by envelope id (analytics: FINAL,
// LIMIT 1 BY envelope_id).
type recentIDs struct {
	mu        sync.Mutex
	seed      maphash.Seed
	max       int
	cur, prev map[uint64]struct{}
}

// recentStored is the size of each generation of recentIDs.
const recentStored = 100_000

func newRecentIDs(n int) *recentIDs {
	return &recentIDs{seed: maphash.MakeSeed(), max: n, cur: make(map[uint64]struct{}), prev: make(map[uint64]struct{})}
}

func (r *recentIDs) has(id string) bool {
	h := maphash.String(r.seed, id)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.cur[h]
	if !ok {
		_, ok = r.prev[h]
	}
	return ok
}

func (r *recentIDs) addAll(rows []analytics.Row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range rows {
		if len(r.cur) >= r.max {
			r.prev, r.cur = r.cur, make(map[uint64]struct{}, r.max)
		}
		r.cur[maphash.String(r.seed, rows[i].EnvelopeID)] = struct{}{}
	}
}
