package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAccountingBalance(t *testing.T) {
	a := Accounting{Sampled: 100, Published: 90, Dropped: map[string]uint64{"queue_full": 6, "too_large": 4},
		Replayed: 88, Skipped: map[string]uint64{"rate_limited": 5}, DeadLettered: 3, Compared: 80, InFlight: 2}
	a.Balance()
	if a.Unaccounted != 0 || a.DroppedTotal() != 10 || a.SkippedTotal() != 5 {
		t.Errorf("balanced: %+v", a)
	}
	a.Compared = 70 // ten lost
	a.Balance()
	if a.Unaccounted != 10 {
		t.Errorf("ten lost: %d", a.Unaccounted)
	}
	a.Sampled = 50 // more settled than sampled: counts not reported
	a.Balance()
	if a.Unaccounted != -40 {
		t.Errorf("over-settled: %d", a.Unaccounted)
	}
	b, err := json.Marshal(Accounting{Dropped: map[string]uint64{}, Skipped: map[string]uint64{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"sampled":0`, `"dropped":{}`, `"skipped":{}`, `"in_flight":0`, `"unaccounted":0`, `"processes":{"taps":0`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("%s lacks %s", b, field)
		}
	}
}

func TestAccountingJSON(t *testing.T) {
	a := Accounting{Sampled: 10, Published: 9, Dropped: map[string]uint64{"queue_full": 1}, Replayed: 8,
		Skipped: map[string]uint64{"rate_limited": 1}, DeadLettered: 1, DeadLetterReasons: map[string]uint64{"unsealable": 1},
		Compared: 6, InFlight: 1, Processes: AccountingProcesses{Taps: 1, Runners: 1}}
	a.Balance()
	checkJSON(t, a, `{"sampled":10,"published":9,"dropped":{"queue_full":1},"replayed":8,"skipped":{"rate_limited":1},`+
		`"dead_lettered":1,"dead_letter_reasons":{"unsealable":1},"compared":6,"in_flight":1,"unaccounted":0,`+
		`"processes":{"taps":1,"runners":1,"comparators":0}}`)
	checkJSON(t, Accounting{InFlightEstimated: true, Error: "x"}, `{"sampled":0,"published":0,"dropped":null,"replayed":0,"skipped":null,`+
		`"dead_lettered":0,"dead_letter_reasons":null,"compared":0,"in_flight":0,"in_flight_estimated":true,"unaccounted":0,`+
		`"processes":{"taps":0,"runners":0,"comparators":0},"error":"x"}`)
}
