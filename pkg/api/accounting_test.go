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
