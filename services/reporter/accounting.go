package reporter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/stream"
)

// Loss accounting (docs/envelope.md, "Loss accounting"): the report's
// accounting section is computed with its numbers and cached with them.
//
//   - sampled, published, dropped, replayed, skipped, dead_lettered: the
//     counts every tap, runner and comparator incarnation wrote to the KV
//     bucket darklaunch_accounting, summed (live.SumCounts);
//   - compared: the report's totals.compared, one ClickHouse row per
//     envelope id, exact however often a pair was inserted;
//   - in_flight: the launch's messages in the envelope and pair streams.
//     Both are work queues, so a message stays there until its stage acks
//     it: the count includes what a runner is replaying and what a
//     comparator holds in its batch, and needs no consumer state (a
//     consumer's pending and ack-pending counts are per consumer, not per
//     launch subject). Batch messages count their items.
//
// Why the streams and not the counters for in_flight: a count derived
// from the counters (published - replayed - ...) would make unaccounted 0
// by construction and hide a loss in the streams (a message discarded by
// the stream limits); reading the streams is an independent measurement.

// maxScanMsgs and maxScanBytes bound the messages read per stream to count
// batch items; past them the remaining messages are estimated from the
// items per message read.
const (
	maxScanMsgs  = 256
	maxScanBytes = 8 << 20
)

// accountingTimeout bounds the NATS reads of one accounting: with NATS
// away the report comes without it (Error says why) rather than late.
const accountingTimeout = 3 * time.Second

// accounting computes the launch's accounting; compared is the report's
// totals.compared. It never fails: what cannot be read is left at zero
// and said in Error.
func (s *Service) accounting(ctx context.Context, launchID string, compared uint64) *api.Accounting {
	ctx, cancel := context.WithTimeout(ctx, accountingTimeout)
	defer cancel()
	a := &api.Accounting{Compared: compared}
	var errs []error
	nc := s.nc.Load()
	if nc == nil {
		errs = append(errs, errors.New("NATS not connected"))
	} else if js, err := jetstream.New(nc); err != nil {
		errs = append(errs, err)
	} else {
		counts, err := readCounts(ctx, js, launchID)
		if err != nil {
			errs = append(errs, err)
		}
		fillCounts(a, live.SumCounts(counts))
		a.InFlight, a.InFlightEstimated, err = inFlight(ctx, js, launchID)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if a.Dropped == nil {
		fillCounts(a, live.SumCounts(nil))
	}
	// Half the numbers would make a loss that is not there: unaccounted
	// is computed from a complete read only.
	if len(errs) == 0 {
		a.Balance()
	}
	if err := errors.Join(errs...); err != nil {
		a.Error = err.Error()
		s.log.Warn("loss accounting incomplete", "launch", launchID, "err", err)
	}
	return a
}

// readCounts reads every incarnation's counts of the launch; a bucket
// nobody wrote yet holds none.
func readCounts(ctx context.Context, js jetstream.JetStream, launchID string) ([]live.Counts, error) {
	kv, err := js.KeyValue(ctx, live.AccountingBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", live.AccountingBucket, err)
	}
	// Undecodable entries are left out and reported with the others.
	return live.ReadCounts(ctx, kv, launchID)
}

// fillCounts copies the summed counts into the accounting.
func fillCounts(a *api.Accounting, t live.CountTotals) {
	a.Sampled, a.Published, a.Replayed = t.Sampled, t.Published, t.Replayed
	a.Dropped, a.Skipped, a.DeadLetterReasons = maps.Clone(t.Dropped), maps.Clone(t.Skipped), maps.Clone(t.DeadLettered)
	a.DeadLettered = live.Total(t.DeadLettered)
	a.Processes = api.AccountingProcesses{Taps: t.Taps, Runners: t.Runners, Comparators: t.Comparators}
}

// inFlight counts the launch's envelopes in the envelope stream and pairs
// in the pair stream, items of batch messages included.
func inFlight(ctx context.Context, js jetstream.JetStream, launchID string) (n uint64, estimated bool, err error) {
	for _, q := range []struct{ stream, subject string }{
		{stream.EnvelopesStream, stream.EnvelopeSubject(launchID)},
		{stream.PairsStream, stream.PairSubject(launchID)},
	} {
		items, est, err := subjectItems(ctx, js, q.stream, q.subject)
		if err != nil {
			return n, estimated, fmt.Errorf("count in-flight messages of %s: %w", q.subject, err)
		}
		n += items
		estimated = estimated || est
	}
	return n, estimated, nil
}

// subjectItems counts the items of the messages a stream holds on one
// subject: the message count from the stream's state, then, to count the
// items of batch messages, the messages themselves, read in sequence
// order (at most maxScanMsgs and maxScanBytes; the rest estimated).
func subjectItems(ctx context.Context, js jetstream.JetStream, name, subject string) (uint64, bool, error) {
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, false, err
	}
	msgs := info.State.Subjects[subject]
	if msgs == 0 {
		return 0, false, nil
	}
	var read, items, bytesRead uint64
	seq := info.State.FirstSeq
	for read < msgs && read < maxScanMsgs && bytesRead < maxScanBytes {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// Acked since the count: fewer in flight than counted.
			return items, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		read++
		bytesRead += uint64(len(m.Data))
		items += itemsOf(m.Header.Get(envelope.BatchHeader) != "", m.Data)
		seq = m.Sequence + 1
	}
	if read == msgs {
		return items, false, nil
	}
	// The rest at the items per message of those read.
	return items + (msgs-read)*items/read, true, nil
}

// itemsOf is the number of envelopes or pairs a message holds: a batch's
// (with the batch header) item count, else 1.
func itemsOf(batch bool, data []byte) uint64 {
	if !batch {
		return 1
	}
	return live.ItemsIn(data)
}
