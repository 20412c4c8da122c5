package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// checkJSON fails unless v encodes to want: the wire format is a contract
// (docs/api.md), so a renamed tag or a changed omission shows here.
func checkJSON(t *testing.T, v any, want string) {
	t.Helper()
	got, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%T encodes to\n%s\nwant\n%s", v, got, want)
	}
}

var t0 = time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)

func TestErrorBodyJSON(t *testing.T) {
	checkJSON(t, ErrorBody{Error: "launch not found: x"}, `{"error":"launch not found: x"}`)
}

func TestLaunchListJSON(t *testing.T) {
	checkJSON(t, LaunchList{Launches: []*launch.Launch{}}, `{"launches":[]}`)
	var l LaunchList
	if err := json.Unmarshal([]byte(`{"launches":[{"id":"a","status":"paused","sample_percent":5}]}`), &l); err != nil ||
		len(l.Launches) != 1 || l.Launches[0].Status != launch.StatusPaused || l.Launches[0].SamplePercent != 5 {
		t.Fatalf("decoded %+v: %v", l, err)
	}
}
