package api

import (
	"testing"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

func TestVerdictJSON(t *testing.T) {
	step := 1
	v := Verdict{LaunchID: "l", Verdict: VerdictPass, Reasons: []string{"all gates pass on 150 pairs"},
		Checks: []Check{{Name: CheckPairs, Value: 150, Threshold: 100, OK: true}},
		Window: Window{Source: SourcePairs, From: t0, Pairs: 150, Step: &step, LatencyControl: ControlSecondary},
		Gates:  launch.DefaultGates, GeneratedAt: t0}
	checkJSON(t, v, `{"launch_id":"l","verdict":"pass","reasons":["all gates pass on 150 pairs"],`+
		`"checks":[{"name":"pairs","value":150,"threshold":100,"ok":true}],`+
		`"window":{"source":"pairs","from":"2026-11-26T06:00:00Z","pairs":150,"step":1,"latency_control":"secondary"},`+
		`"gates":{"min_pairs":100,"max_mismatch_rate":0.01,"max_error_rate_delta":0.01,"max_latency_ratio":{"p50":1.2,"p95":1.5,"p99":2},"alpha":0.01,"min_latency_delta_ms":1},`+
		`"generated_at":"2026-11-26T06:00:00Z","age_seconds":0}`)
	// A live window names its taps; a window without a ramp step has none.
	checkJSON(t, Window{Source: SourceLive, From: t0, Pairs: 3, Taps: 2}, `{"source":"live","from":"2026-11-26T06:00:00Z","pairs":3,"taps":2}`)
}
