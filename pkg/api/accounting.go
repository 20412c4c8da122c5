package api

// Accounting says what became of every envelope the taps sampled for a
// launch, summed over every tap, runner and comparator process (their
// counts reach the reporter through NATS, not Prometheus). Once the
// pipeline is idle,
//
//	sampled = compared + dropped + skipped + dead_lettered + in_flight
//
// and Unaccounted, the difference, is 0. docs/envelope.md ("Loss
// accounting") says where each number comes from.
type Accounting struct {
	// Sampled: envelopes the taps started, one per sampled request and
	// launch.
	Sampled uint64 `json:"sampled"`
	// Published: envelopes the envelope stream acknowledged.
	Published uint64 `json:"published"`
	// Dropped: envelopes the taps gave up, by reason as the taps counted
	// them (queue_full, nats_error, too_large, shutdown, client_abort,
	// primary_error, unsupported, encode_error). Never null.
	Dropped map[string]uint64 `json:"dropped"`
	// Replayed: envelopes the runners replayed and whose pair was stored
	// (a pair stored twice after a lost ack counts twice here).
	Replayed uint64 `json:"replayed"`
	// Skipped: envelopes the runners acked without replay, by reason
	// (rate_limited, rolled_back, promoted). Never null.
	Skipped map[string]uint64 `json:"skipped"`
	// DeadLettered: envelopes (runners) and pairs (comparators) moved to
	// the dead-letter stream; DeadLetterReasons splits them by reason.
	DeadLettered      uint64            `json:"dead_lettered"`
	DeadLetterReasons map[string]uint64 `json:"dead_letter_reasons"`
	// Compared: the launch's comparison rows in ClickHouse, one per
	// envelope id (the report's totals.compared).
	Compared uint64 `json:"compared"`
	// InFlight: envelopes and pairs of the launch waiting in the
	// envelope and pair streams, being processed included (the streams
	// are work queues: a message stays until its stage acks it), counted
	// per envelope (a batch message counts its items).
	InFlight uint64 `json:"in_flight"`
	// InFlightEstimated: the streams held too many of the launch's
	// messages to read them all, so the envelopes in the batches not read
	// were estimated from those read (a batch message holds many).
	InFlightEstimated bool `json:"in_flight_estimated,omitempty"`
	// Unaccounted = Sampled - Compared - Dropped - Skipped - DeadLettered
	// - InFlight. 0 when nothing is lost; while traffic flows it also
	// holds what is between two counts (in a tap's queue, counted by a
	// process but not yet reported); negative when more was settled than
	// reported sampled (a tap that crashed before reporting its last
	// counts, a runner's ack lost in a crash: docs/api.md).
	Unaccounted int64 `json:"unaccounted"`
	// Processes is how many process incarnations reported counts: taps,
	// runners, comparators.
	Processes AccountingProcesses `json:"processes"`
	// Error, when set, says why some numbers are missing (the counts or
	// the streams could not be read); the others are still given, and
	// Unaccounted is left at 0 (not computed from half the numbers).
	Error string `json:"error,omitempty"`
}

// AccountingProcesses counts the process incarnations that reported.
type AccountingProcesses struct {
	Taps        int `json:"taps"`
	Runners     int `json:"runners"`
	Comparators int `json:"comparators"`
}

// DroppedTotal sums Dropped over every reason.
func (a *Accounting) DroppedTotal() uint64 { return sumReasons(a.Dropped) }

// SkippedTotal sums Skipped over every reason.
func (a *Accounting) SkippedTotal() uint64 { return sumReasons(a.Skipped) }

// Balance computes Unaccounted from the other numbers.
func (a *Accounting) Balance() {
	a.Unaccounted = int64(a.Sampled) - int64(a.Compared) - int64(a.DroppedTotal()) - int64(a.SkippedTotal()) -
		int64(a.DeadLettered) - int64(a.InFlight)
}

func sumReasons(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
