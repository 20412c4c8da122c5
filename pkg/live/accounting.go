package live

// Loss accounting: every process of the pipeline counts what became of the
// sampled envelopes of each launch and reports its counts through NATS, so
// the reporter can add up any number of taps, runners and comparators.
//
// The rule that keeps a sum exact across restarts (docs/envelope.md,
// "Loss accounting"):
//
//   - A Ledger belongs to one process incarnation: its Process name is the
//     role, the process id (tap id, runner id...) and the start time of the
//     incarnation. A restarted process has a new name, even with the same
//     id, so it never overwrites (and so never loses) what its predecessor
//     reported, and never counts on top of it (it starts from zero).
//   - Its counters are cumulative and only grow; each write replaces the
//     incarnation's key with all of them. A lost write is repaired by the
//     next, and writing twice counts nothing twice.
//   - Keys never expire (the bucket has no TTL): a process that stopped
//     still counts what it did. The sum over the keys of a launch is the
//     launch's total.
//   - Each event is counted once, by the process that settled it, once it
//     is settled (a publish acknowledged, a delivery acked or dead-
//     lettered): an event redone after a crash or a lost ack is counted by
//     the process that finally settles it.
//   - What a process counted after its last write is lost if it crashes:
//     at most one interval of counts. A clean stop writes its final counts
//     after its drain.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/retry"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// AccountingBucket is the KV bucket holding every process's counts, one
// key per launch and process incarnation: "<launch_id>.<process>".
const AccountingBucket = "darklaunch_accounting"

// AccountingVersion is the wire version of Counts (its "v").
const AccountingVersion = 1

// The roles of the processes that write counts.
const (
	RoleTap        = "tap"
	RoleRunner     = "runner"
	RoleComparator = "comparator"
)

// OpenAccountingBucket creates the accounting bucket or updates its
// settings, and returns it. It keeps only the latest value of each key,
// for ever (no TTL: a stopped process's counts still count).
func OpenAccountingBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	return stream.OpenKV(ctx, js, AccountingBucket,
		"darklaunch loss accounting: cumulative counts per launch and process incarnation, <launch_id>.<process>", 0)
}

// Counts is what one process incarnation counted of one launch since it
// started. A tap counts Sampled, Published and Dropped; a runner Replayed,
// Skipped and DeadLettered; a comparator DeadLettered.
type Counts struct {
	V        int    `json:"v"`
	LaunchID string `json:"launch_id"`
	// Process names the incarnation: ProcessName(role, id, started).
	Process string `json:"process"`
	Role    string `json:"role"`
	// Started is when the incarnation started; At when it wrote these
	// counts (its clock).
	Started time.Time `json:"started"`
	At      time.Time `json:"at"`

	// Sampled: envelopes started (one per sampled request and launch).
	Sampled uint64 `json:"sampled,omitempty"`
	// Published: envelopes the envelope stream acknowledged.
	Published uint64 `json:"published,omitempty"`
	// Dropped: envelopes given up by the tap, by reason.
	Dropped map[string]uint64 `json:"dropped,omitempty"`
	// Replayed: envelopes replayed whose pair the pairs stream stored.
	Replayed uint64 `json:"replayed,omitempty"`
	// Skipped: envelopes acked without replay, by reason.
	Skipped map[string]uint64 `json:"skipped,omitempty"`
	// DeadLettered: envelopes (runner) or pairs (comparator) moved to the
	// dead-letter stream, by reason.
	DeadLettered map[string]uint64 `json:"dead_lettered,omitempty"`
}

// ProcessName is the name of a process incarnation: role, id (every
// character that cannot be part of a key replaced by '_') and the start
// time in base 36 nanoseconds, "tap-host-12-1bx7w0f5d3k".
func ProcessName(role, id string, started time.Time) string {
	return role + "-" + sanitize(id) + "-" + strconv.FormatInt(started.UnixNano(), 36)
}

// EncodeCounts checks c and returns it as JSON; V 0 is written as
// AccountingVersion. Errors wrap ErrInvalid.
func EncodeCounts(c Counts) ([]byte, error) {
	if c.V == 0 {
		c.V = AccountingVersion
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return json.Marshal(c)
}

// DecodeCounts parses stored counts; errors wrap ErrMalformed.
func DecodeCounts(data []byte) (Counts, error) {
	var c Counts
	if err := json.Unmarshal(data, &c); err != nil {
		return Counts{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := c.check(); err != nil {
		return Counts{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return c, nil
}

func (c *Counts) check() error {
	switch {
	case c.V != AccountingVersion:
		return fmt.Errorf("version %d, want %d", c.V, AccountingVersion)
	case !validLaunchID(c.LaunchID):
		return fmt.Errorf("launch id %q", c.LaunchID)
	case c.Process == "" || strings.ContainsFunc(c.Process, func(r rune) bool { return !keyChar(r) }):
		return fmt.Errorf("process %q", c.Process)
	}
	return nil
}

// PublishCounts writes c under "<launch_id>.<process>", replacing the
// incarnation's previous counts of the launch.
func PublishCounts(ctx context.Context, kv jetstream.KeyValue, c Counts) error {
	data, err := EncodeCounts(c)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, c.LaunchID+"."+c.Process, data); err != nil {
		return fmt.Errorf("publish counts of %s: %w", c.LaunchID, err)
	}
	return nil
}

// ReadCounts returns every process incarnation's counts of the launch,
// sorted by process. Entries that do not decode are left out and reported
// in an error wrapping ErrMalformed, returned with the counts that did;
// any other error means nothing could be read.
func ReadCounts(ctx context.Context, kv jetstream.KeyValue, launchID string) ([]Counts, error) {
	if !validLaunchID(launchID) {
		return nil, fmt.Errorf("%w: launch id %q cannot be part of a key", ErrInvalid, launchID)
	}
	var out []Counts
	bad, err := watchLaunch(ctx, kv, launchID, func(key string, value []byte) error {
		c, err := DecodeCounts(value)
		if err == nil && key != c.LaunchID+"."+c.Process {
			err = fmt.Errorf("%w: counts of %s.%s under another key", ErrMalformed, c.LaunchID, c.Process)
		}
		if err == nil {
			out = append(out, c)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read counts of %s: %w", launchID, err)
	}
	slices.SortFunc(out, func(a, b Counts) int { return strings.Compare(a.Process, b.Process) })
	return out, bad
}

// CountTotals are a launch's counts summed over the process incarnations.
type CountTotals struct {
	// Processes is how many incarnations were summed, Taps, Runners and
	// Comparators how many of each role.
	Processes, Taps, Runners, Comparators int
	Sampled, Published, Replayed          uint64
	// Dropped, Skipped and DeadLettered are by reason, never nil.
	Dropped, Skipped, DeadLettered map[string]uint64
}

// SumCounts adds up the counts of one launch: each incarnation counted its
// own events, so the total is the plain sum (see the rule above).
func SumCounts(cs []Counts) CountTotals {
	t := CountTotals{Dropped: map[string]uint64{}, Skipped: map[string]uint64{}, DeadLettered: map[string]uint64{}}
	for _, c := range cs {
		t.Processes++
		switch c.Role {
		case RoleTap:
			t.Taps++
		case RoleRunner:
			t.Runners++
		case RoleComparator:
			t.Comparators++
		}
		t.Sampled += c.Sampled
		t.Published += c.Published
		t.Replayed += c.Replayed
		addTo(t.Dropped, c.Dropped)
		addTo(t.Skipped, c.Skipped)
		addTo(t.DeadLettered, c.DeadLettered)
	}
	return t
}

func addTo(dst, src map[string]uint64) {
	for k, v := range src {
		dst[k] += v
	}
}

// Total sums a by-reason map.
func Total(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// Ledger is one process incarnation's counts per launch, and their writer.
// Its methods are safe for concurrent use; the counting ones take a lock
// of their launch's entry only (a map lookup without lock first), so a
// request path can call them.
type Ledger struct {
	role, process string
	started       time.Time

	launches sync.Map // launch id -> *ledgerEntry

	// kv is the bucket, opened at the first Flush and again after a
	// failure; flushMu makes one Flush run at a time.
	flushMu sync.Mutex
	kv      jetstream.KeyValue
}

type ledgerEntry struct {
	mu    sync.Mutex
	c     Counts
	dirty bool
}

// NewLedger returns the ledger of a process incarnation starting now.
func NewLedger(role, id string) *Ledger {
	now := time.Now().UTC()
	return &Ledger{role: role, process: ProcessName(role, id, now), started: now}
}

// Process is the incarnation's name, the second token of its keys.
func (l *Ledger) Process() string { return l.process }

func (l *Ledger) add(launchID string, f func(c *Counts)) {
	// A launch id that cannot be part of a key (a foreign message on a
	// subject with more tokens) names no launch a report can be asked
	// for: there is nothing to count it under.
	if l == nil {
		return
	}
	v, ok := l.launches.Load(launchID)
	if !ok {
		// Checked once per launch: only valid ids are ever stored.
		if !validLaunchID(launchID) {
			return
		}
		v, _ = l.launches.LoadOrStore(launchID, &ledgerEntry{c: Counts{
			V: AccountingVersion, LaunchID: launchID, Process: l.process, Role: l.role, Started: l.started,
		}})
	}
	e := v.(*ledgerEntry)
	e.mu.Lock()
	f(&e.c)
	e.dirty = true
	e.mu.Unlock()
}

func addReason(m *map[string]uint64, reason string, n uint64) {
	if *m == nil {
		*m = map[string]uint64{}
	}
	(*m)[reason] += n
}

// Sampled counts n envelopes started for the launch.
func (l *Ledger) Sampled(launchID string, n uint64) {
	l.add(launchID, func(c *Counts) { c.Sampled += n })
}

// Published counts n envelopes of the launch acknowledged by the stream.
func (l *Ledger) Published(launchID string, n uint64) {
	l.add(launchID, func(c *Counts) { c.Published += n })
}

// Dropped counts n envelopes of the launch given up for reason.
func (l *Ledger) Dropped(launchID, reason string, n uint64) {
	l.add(launchID, func(c *Counts) { addReason(&c.Dropped, reason, n) })
}

// Replayed counts n envelopes of the launch replayed, their pairs stored.
func (l *Ledger) Replayed(launchID string, n uint64) {
	l.add(launchID, func(c *Counts) { c.Replayed += n })
}

// Skipped counts n envelopes of the launch acked without replay.
func (l *Ledger) Skipped(launchID, reason string, n uint64) {
	l.add(launchID, func(c *Counts) { addReason(&c.Skipped, reason, n) })
}

// DeadLettered counts n messages of the launch dead-lettered for reason.
func (l *Ledger) DeadLettered(launchID, reason string, n uint64) {
	l.add(launchID, func(c *Counts) { addReason(&c.DeadLettered, reason, n) })
}

// Counts returns the current counts of the launch (zero Counts when the
// ledger counted nothing for it).
func (l *Ledger) Counts(launchID string) Counts {
	v, ok := l.launches.Load(launchID)
	if !ok {
		return Counts{}
	}
	e := v.(*ledgerEntry)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c.clone()
}

func (c Counts) clone() Counts {
	c.Dropped, c.Skipped, c.DeadLettered = maps.Clone(c.Dropped), maps.Clone(c.Skipped), maps.Clone(c.DeadLettered)
	return c
}

// Flush writes the counts of every launch that changed since its last
// successful write, opening the bucket first if needed. A launch whose
// write failed is written again by the next Flush. It returns the number
// of launches written and the joined errors.
func (l *Ledger) Flush(ctx context.Context, js jetstream.JetStream) (int, error) {
	if l == nil {
		return 0, nil
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	var pending []*ledgerEntry
	l.launches.Range(func(_, v any) bool {
		if e := v.(*ledgerEntry); e.isDirty() {
			pending = append(pending, e)
		}
		return true
	})
	if len(pending) == 0 {
		return 0, nil
	}
	if l.kv == nil {
		kv, err := OpenAccountingBucket(ctx, js)
		if err != nil {
			return 0, err
		}
		l.kv = kv
	}
	var errs []error
	written := 0
	for _, e := range pending {
		e.mu.Lock()
		c := e.c.clone()
		e.dirty = false
		e.mu.Unlock()
		c.At = time.Now().UTC()
		if err := PublishCounts(ctx, l.kv, c); err != nil && !errors.Is(err, ErrInvalid) {
			e.mu.Lock()
			e.dirty = true
			e.mu.Unlock()
			errs = append(errs, err)
			continue
		}
		written++
	}
	if len(errs) > 0 {
		// A NATS server that lost its storage lost the bucket too.
		l.kv = nil
	}
	return written, errors.Join(errs...)
}

func (e *ledgerEntry) isDirty() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dirty
}

// ReportInterval is how often a runner or a comparator writes its counts
// (a tap writes them with its live reports).
const ReportInterval = 2 * time.Second

// finalReportWait bounds how long Report's last write waits for done.
const finalReportWait = 10 * time.Second

// Report writes the ledger's changed counts every interval until ctx
// ends, then once more when done reports true (every delivery in hand
// settled, or the process gave them up), at most 10 s later, so that a
// clean stop leaves complete counts. Failed writes are logged (at most one
// log every 30 s) and retried by the next.
func (l *Ledger) Report(ctx context.Context, js jetstream.JetStream, interval time.Duration, done func() bool, log *slog.Logger) {
	var logged time.Time
	write := func(ctx context.Context) {
		wctx, cancel := context.WithTimeout(ctx, reportTimeout)
		defer cancel()
		_, err := l.Flush(wctx, js)
		if err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) && time.Since(logged) > 30*time.Second {
			logged = time.Now()
			log.Warn("loss accounting not written; the reports count this process late", "err", err)
		}
	}
	retry.Every(ctx, interval, func() { write(ctx) })
	deadline := time.Now().Add(finalReportWait)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	write(context.WithoutCancel(ctx))
}

// reportTimeout bounds one write of Report.
const reportTimeout = 5 * time.Second

// batchMagic starts a batch message's framing (docs/envelope.md,
// "Batches"): "DLB", the framing version (1 or 2), then the item count as
// a uvarint. A JSON document never starts with it.
var batchMagic = []byte("DLB")

// ItemsIn is how many envelopes or pairs a message's data holds: a
// batch's item count (as its framing claims it: a batch broken further on
// still held that many for its tap), 1 for a single JSON document or a
// batch whose count cannot be read.
func ItemsIn(data []byte) uint64 {
	if !bytes.HasPrefix(data, batchMagic) || len(data) == len(batchMagic) || data[len(batchMagic)] < 1 || data[len(batchMagic)] > 2 {
		return 1
	}
	n, k := binary.Uvarint(data[len(batchMagic)+1:])
	// Every item takes at least two bytes: a larger count is a lie.
	if k <= 0 || n == 0 || n > uint64(len(data)/2) {
		return 1
	}
	return n
}
