package launch

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDurationJSON(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{5 * time.Minute, `"5m"`},
		{time.Hour, `"1h"`},
		{90 * time.Minute, `"1h30m"`},
		{time.Hour + time.Second, `"1h0m1s"`},
		{1500 * time.Millisecond, `"1.5s"`},
		{0, `"0s"`},
		{250 * time.Millisecond, `"250ms"`},
	} {
		b, err := json.Marshal(Duration(c.d))
		if err != nil || string(b) != c.want {
			t.Errorf("marshal %s = %s, %v; want %s", c.d, b, err, c.want)
		}
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil || back.D() != c.d {
			t.Errorf("unmarshal %s = %s, %v; want %s", b, back, err, c.d)
		}
	}
	var d Duration
	for _, bad := range []string{`"5x"`, `300`, `""`, `true`} {
		if err := json.Unmarshal([]byte(bad), &d); !errors.Is(err, ErrInvalid) {
			t.Errorf("unmarshal %s: %v, want ErrInvalid", bad, err)
		}
	}
}

func TestGatesWithDefaults(t *testing.T) {
	if got := (Gates{}).WithDefaults(); got != DefaultGates {
		t.Fatalf("zero gates = %+v, want the defaults %+v", got, DefaultGates)
	}
	if DefaultGates.MinPairs != 100 || DefaultGates.MaxMismatchRate != 0.01 || DefaultGates.MaxErrorRateDelta != 0.01 ||
		DefaultGates.MaxLatencyRatio != (LatencyRatio{1.2, 1.5, 2.0}) || DefaultGates.Alpha != 0.01 || DefaultGates.MinLatencyDeltaMS != 1 {
		t.Fatalf("documented defaults changed: %+v", DefaultGates)
	}
	g := Gates{MinPairs: 5, MaxLatencyRatio: LatencyRatio{P95: 3}, Alpha: 0.05, MinLatencyDeltaMS: 2.5}.WithDefaults()
	want := DefaultGates
	want.MinPairs, want.MaxLatencyRatio.P95, want.Alpha, want.MinLatencyDeltaMS = 5, 3, 0.05, 2.5
	if g != want {
		t.Fatalf("partial gates = %+v, want %+v", g, want)
	}
}

// decodeLaunch reads a launch the way the API reads a body: unknown fields
// refused.
func decodeLaunch(t *testing.T, body string) (Launch, error) {
	t.Helper()
	var l Launch
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(&l)
	return l, err
}

func TestRampValidation(t *testing.T) {
	base := `"name": "r", "shadow_url": "http://s"`
	for _, c := range []struct {
		name, body string
		want       string // "" = valid
	}{
		{"valid ramp", `"ramp": {"steps": [{"percent": 1, "hold": "5m"}, {"percent": 10, "hold": "10m"}, {"percent": 100, "hold": "1h"}], "auto_promote": true, "auto_rollback": true,
			"live_steps": [{"percent": 10, "hold": "10m"}, {"percent": 100, "hold": "0s"}]}`, ""},
		{"fractional percent", `"ramp": {"steps": [{"percent": 0.01, "hold": "1s"}, {"percent": 0.5}]}`, ""},
		{"live steps only", `"ramp": {"live_steps": [{"percent": 25, "hold": "1m"}]}`, ""},
		{"no steps", `"ramp": {"steps": []}`, "ramp.steps is empty"},
		{"empty ramp", `"ramp": {}`, "ramp.steps is empty"},
		{"percent zero", `"ramp": {"steps": [{"percent": 0, "hold": "1m"}]}`, "ramp.steps[0].percent 0"},
		{"percent over 100", `"ramp": {"steps": [{"percent": 10}, {"percent": 101}]}`, "ramp.steps[1].percent 101"},
		{"not increasing", `"ramp": {"steps": [{"percent": 1}, {"percent": 10}, {"percent": 10}]}`, "ramp.steps[2].percent 10 must be above the previous step's 10"},
		{"decreasing", `"ramp": {"steps": [{"percent": 50}, {"percent": 10}]}`, "ramp.steps[1].percent"},
		{"negative hold", `"ramp": {"steps": [{"percent": 1, "hold": "-5m"}]}`, "ramp.steps[0].hold -5m"},
		{"hold too long", `"ramp": {"steps": [{"percent": 1, "hold": "9999h"}]}`, "ramp.steps[0].hold"},
		{"unparseable hold", `"ramp": {"steps": [{"percent": 1, "hold": "1m"}, {"percent": 2, "hold": "5 minutes"}]}`, `ramp.steps[1].hold "5 minutes" is not a duration`},
		{"numeric hold", `"ramp": {"steps": [{"percent": 1, "hold": 300}]}`, `ramp.steps[0].hold 300 is not a duration string`},
		{"bad live step", `"ramp": {"steps": [{"percent": 1}], "live_steps": [{"percent": 50}, {"percent": 20}]}`, "ramp.live_steps[1].percent 20"},
		{"min pairs negative", `"gates": {"min_pairs": -1}`, "gates.min_pairs -1"},
		{"mismatch rate over 1", `"gates": {"max_mismatch_rate": 1.5}`, "gates.max_mismatch_rate 1.5"},
		{"error delta negative", `"gates": {"max_error_rate_delta": -0.1}`, "gates.max_error_rate_delta"},
		{"ratio below 1", `"gates": {"max_latency_ratio": {"p95": 0.8}}`, "gates.max_latency_ratio.p95 0.8"},
		{"alpha too big", `"gates": {"alpha": 0.9}`, "gates.alpha 0.9"},
		{"latency floor negative", `"gates": {"min_latency_delta_ms": -1}`, "gates.min_latency_delta_ms -1"},
		{"latency floor too big", `"gates": {"min_latency_delta_ms": 100000}`, "gates.min_latency_delta_ms 100000"},
		{"valid gates", `"gates": {"min_pairs": 10, "max_mismatch_rate": 0.001, "max_error_rate_delta": 0.05, "max_latency_ratio": {"p50": 1.1, "p99": 3}, "alpha": 0.05, "min_latency_delta_ms": 0.5}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := decodeLaunch(t, "{"+base+", "+c.body+"}")
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			err = l.Normalize()
			if c.want == "" {
				if err != nil {
					t.Fatalf("valid launch refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Normalize = %v, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}

	if _, err := decodeLaunch(t, `{"ramp": {"steps": [{"percent": 1, "hodl": "5m"}]}}`); err == nil || !strings.Contains(err.Error(), `unknown field "hodl"`) {
		t.Fatalf("a step's unknown field: %v", err)
	}
}

func TestRampStepIndex(t *testing.T) {
	l := Launch{Name: "r", ShadowURL: "http://s", Status: StatusActive, Ramp: &Ramp{
		Steps:     []Step{{Percent: 1}, {Percent: 10}},
		LiveSteps: []Step{{Percent: 20}, {Percent: 50}, {Percent: 80}},
	}}
	l.RampStep = 1
	if err := l.Normalize(); err != nil {
		t.Fatal(err)
	}
	if s, ok := l.CurrentStep(); !ok || s.Percent != 10 {
		t.Fatalf("current step %+v %v", s, ok)
	}
	l.RampStep = 2
	if err := l.Normalize(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("step 2 of 2 shadow steps: %v", err)
	}
	// While promoting the index counts live steps.
	l.Status = StatusPromoting
	if err := l.Normalize(); err != nil {
		t.Fatal(err)
	}
	if s, ok := l.CurrentStep(); !ok || s.Percent != 80 {
		t.Fatalf("current live step %+v %v", s, ok)
	}
	noRamp := Launch{Name: "r", ShadowURL: "http://s", RampStep: 1}
	if err := noRamp.Normalize(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ramp_step without ramp: %v", err)
	}
	if _, ok := noRamp.CurrentStep(); ok {
		t.Fatal("a launch without ramp has a current step")
	}
}

func TestRampRoundTrip(t *testing.T) {
	l := Launch{Ramp: &Ramp{Steps: []Step{{Percent: 1, Hold: Duration(5 * time.Minute)}}, AutoRollback: true},
		Gates: Gates{MinPairs: 7}, RampStep: 0, StepStartedAt: time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)}
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ramp":{"steps":[{"percent":1,"hold":"5m"}],"auto_promote":false,"auto_rollback":true}`,
		`"gates":{"min_pairs":7,`, `"ramp_step":0`, `"step_started_at":"2026-11-26T06:00:00Z"`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("%s lacks %s", b, want)
		}
	}
	var back Launch
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Ramp == nil || back.Ramp.Steps[0] != l.Ramp.Steps[0] || back.Gates != l.Gates || !back.StepStartedAt.Equal(l.StepStartedAt) {
		t.Fatalf("round trip: %+v", back)
	}
	// A launch without ramp has none in its JSON.
	b, _ = json.Marshal(Launch{})
	if strings.Contains(string(b), `"ramp":`) {
		t.Fatalf("no ramp marshals as %s", b)
	}
}
