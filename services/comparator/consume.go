package comparator

import (
	"context"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stage"
)

const (
	// idleFetchWait bounds a pull request, and so how long shutdown waits
	// for the fetch in progress.
	idleFetchWait = time.Second
	// minFetchWait keeps a pull request's expiry meaningful to the server.
	minFetchWait = 10 * time.Millisecond
	// msgOverhead approximates what a message costs beyond its payload
	// (subject, reply subject, headers) in the server's byte accounting.
	msgOverhead = 4096
)

// batch is the rows collected for one insert and every message to
// acknowledge once they are stored.
type batch struct {
	rows []analytics.Row
	msgs []*stage.Msg
	// examples are written after the rows, best-effort; claims are their
	// slots, freed again if the write fails.
	examples []analytics.Example
	claims   []claim
	ids      map[string]struct{}
	bytes    int
	// started is when the fetch that brought the first message began: a
	// pair waits at most FlushInterval from then.
	started time.Time
	// touched is when the messages' ack deadline last restarted.
	touched time.Time
}

func newBatch(size int) *batch {
	return &batch{rows: make([]analytics.Row, 0, size), msgs: make([]*stage.Msg, 0, size), ids: make(map[string]struct{}, size)}
}

func (b *batch) take(msg *stage.Msg, fetched time.Time) {
	if len(b.msgs) == 0 {
		b.started, b.touched = fetched, fetched
	}
	b.msgs = append(b.msgs, msg)
	b.bytes += len(msg.Data()) + msgOverhead
}

// claim is an example slot of a diff class.
type claim struct {
	key  string
	slot uint8
}

func (b *batch) reset() {
	// Clearing drops the references to message data and diff slices.
	clear(b.rows)
	clear(b.msgs)
	clear(b.ids)
	b.rows, b.msgs, b.bytes = b.rows[:0], b.msgs[:0], 0
	b.examples, b.claims = nil, nil
}

// Next says what the stage's next pull may bring: the batch is flushed
// when it is full (by count or bytes) or its first pair has waited
// FlushInterval; otherwise the pull asks only for what fits in the batch,
// and nothing is pulled while a flush is in progress, so a ClickHouse
// outage holds at most one batch here and leaves the rest in the stream.
func (s *Service) Next() stage.Pull {
	b := s.b
	s.m.pending.Set(float64(len(b.msgs)))
	if n := len(b.msgs); n > 0 && (n >= s.cfg.BatchSize || s.budget-b.bytes < s.slack || time.Since(b.started) >= s.cfg.FlushInterval) {
		return stage.Pull{Flush: true}
	}
	wait := min(idleFetchWait, s.cfg.FlushInterval)
	if len(b.msgs) > 0 {
		wait = min(idleFetchWait, s.cfg.FlushInterval-time.Since(b.started))
	}
	s.fetched = time.Now()
	return stage.Pull{Max: s.cfg.BatchSize - len(b.msgs), MaxBytes: s.budget - b.bytes, Wait: max(wait, minFetchWait)}
}

// Flush inserts the batch (see flush). On shutdown the stage calls it
// under COMPARATOR_SHUTDOWN_TIMEOUT; pairs it could not store are handed
// back by the stage for immediate redelivery.
func (s *Service) Flush(ctx context.Context) {
	if len(s.b.msgs) > 0 {
		s.flush(ctx, s.b)
	}
}

// Handle adds one pair to the batch, or dead-letters it. The pair is
// compared under its launch's current rules, and when it is the first of
// its diff class to fall in a free example slot, its redacted example is
// added to the batch too. Every pair of the batch is acked by the flush
// that stores it.
func (s *Service) Handle(ctx context.Context, msg *stage.Msg) {
	s.handle(ctx, s.b, msg, s.fetched)
}

// handle adds one message to the batch, or dead-letters it. The pair is
// compared under its launch's current rules, and when it is the first of
// its diff class to fall in a free example slot, its redacted example is
// added to the batch too.
func (s *Service) handle(ctx context.Context, b *batch, msg *stage.Msg, fetched time.Time) {
	pair, err := envelope.DecodePair(msg.Data())
	var row analytics.Row
	var rules *compare.Ruleset
	if err == nil {
		var rev uint64
		rules, rev = s.rules.rules(ctx, pair.Envelope.LaunchID)
		c := s.cmp
		c.Rules = rules
		row, err = s.buildRow(c, pair)
		row.RulesRevision = rev
	}
	if err != nil {
		msg.DeadLetter(ctx, reasonMalformed, err)
		return
	}
	b.take(msg, fetched)
	if _, dup := b.ids[row.EnvelopeID]; dup {
		// Published twice outside the duplicate window, or redelivered:
		// one row, both messages acked with the batch.
		s.m.duplicates.Inc()
		return
	}
	b.ids[row.EnvelopeID] = struct{}{}
	b.rows = append(b.rows, row)
	if row.Fingerprint != "" && len(b.examples) < maxExamplesPerBatch {
		c := claim{key: classKey(row.LaunchID, row.Fingerprint), slot: ExampleSlot(row.EnvelopeID)}
		if s.slots.claim(c.key, c.slot) {
			b.examples = append(b.examples, BuildExample(pair, &row, rules))
			b.claims = append(b.claims, c)
		}
	}
}

// flush inserts the batch, retrying with backoff until it succeeds or ctx
// is done, and acks every message of the batch after the insert succeeded.
// While it retries it keeps the messages' ack deadlines from expiring, so
// they are not redelivered to another process meanwhile.
func (s *Service) flush(ctx context.Context, b *batch) bool {
	bo := s.backoff()
	db := s.cfg.ClickHouseDatabase
	for attempt := 1; ; attempt++ {
		s.keepAlive(b)
		ch := s.ch.Get()
		ictx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
		start := time.Now()
		err := analytics.Insert(ictx, ch, db, b.rows)
		cancel()
		if err == nil {
			examples, claims := b.examples, b.claims
			s.committed(b, time.Since(start))
			s.writeExamples(ctx, examples, claims)
			return true
		}
		s.m.insertFailures.Inc()
		if ctx.Err() != nil {
			return false
		}
		delay := bo.Next()
		s.log.Warn("inserting a batch failed; keeping it and retrying", "rows", len(b.rows), "attempt", attempt, "in", delay, "err", err)
		if !s.pause(ctx, b, delay) {
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

// committed acks a stored batch and empties it.
func (s *Service) committed(b *batch, took time.Duration) {
	failed := 0
	for _, msg := range b.msgs {
		if err := msg.AckNoWait(); err != nil {
			failed++
		}
	}
	if failed > 0 {
		// The rows are stored; the redelivered copies collapse with FINAL.
		s.log.Warn("acks failed after an insert; those pairs will be redelivered and stored again", "failed", failed)
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
	s.log.Debug("batch stored", "rows", len(b.rows), "messages", len(b.msgs), "took", took)
	b.reset()
	s.m.pending.Set(0)
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
		for _, c := range claims {
			s.slots.release(c.key, c.slot)
		}
		s.log.Warn("writing example pairs failed; their slots stay free for later pairs", "examples", len(examples), "err", err)
		return
	}
	s.m.examples.Add(float64(len(examples)))
}

// pause waits d, keeping the batch alive meanwhile; false if ctx ended.
func (s *Service) pause(ctx context.Context, b *batch, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		if !retry.Sleep(ctx, min(left, s.cfg.keepAliveEvery())) {
			return false
		}
		s.keepAlive(b)
	}
}

// keepAlive restarts the ack deadline of every message in the batch when a
// quarter of it has passed.
func (s *Service) keepAlive(b *batch) {
	if time.Since(b.touched) < s.cfg.keepAliveEvery() {
		return
	}
	failed := 0
	for _, msg := range b.msgs {
		if err := msg.InProgress(); err != nil {
			failed++
		}
	}
	if failed > 0 {
		// NATS is down too: the server may redeliver these later, which
		// costs a duplicate row (collapsed by FINAL), not a lost one.
		s.log.Warn("could not extend the ack deadline of held pairs", "failed", failed, "held", len(b.msgs))
	}
	b.touched = time.Now()
}
