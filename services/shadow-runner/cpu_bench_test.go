package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/service"
	"github.com/darklaunch/darklaunch/pkg/stage/stagetest"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMain runs the runner itself when started by stagetest.StartChild.
func TestMain(m *testing.M) {
	if os.Getenv(stagetest.ChildEnv) != "" {
		os.Exit(stagetest.RunChild(func() int { return service.Main("shadow-runner", DefaultConfig(), New) }))
	}
	os.Exit(m.Run())
}

// BenchmarkCPUPerPair measures the CPU time the runner process spends per
// pair (µs/pair) and its pairs/s, the runner alone in a child process
// (NATS, the shadow and the publisher stay in the test process), on 1 KiB
// JSON bodies: envelopes published one per message (v1, as a foreign tap
// does) and in batches of 100 (as the mirror does). Run with
// -benchtime 1x; PAIRS sets the count (default 20000).
func BenchmarkCPUPerPair(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchCPU(b, batch) })
	}
}

func benchPairs() int {
	var n int
	if _, err := fmt.Sscan(os.Getenv("PAIRS"), &n); err != nil || n <= 0 {
		return 20000
	}
	return n
}

func benchCPU(b *testing.B, batch int) {
	n := benchPairs()
	ns := testenv.StartJetStream(b)
	_, js := testenv.Connect(b, ns.URL())
	ctx := testenv.Context(b)
	kv, err := launch.Setup(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	body := `{"items":[` + strings.Repeat(`{"id":12345,"name":"widget","price":9.99},`, 23) + `{"id":0}]}`
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(shadow.Close)
	l, err := launch.NewStore(kv).Create(ctx, launch.Launch{Name: "bench", ShadowURL: shadow.URL, SamplePercent: 100})
	if err != nil {
		b.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	child := stagetest.StartChild(b, "NATS_URL="+ns.URL(), "RUNNER_ADMIN_ADDR="+admin, "RUNNER_ID=bench", "LOG_LEVEL=warn")
	testenv.CheckFor(b, 30*time.Second, 20*time.Millisecond, func() error {
		_, err := js.Consumer(ctx, stream.EnvelopesStream, stream.RunnerConsumer)
		return err
	})
	for b.Loop() {
		stagetest.MeasureCPU(b, child, js, admin, "darklaunch_shadow_runner_pairs_published_total", n, func() {
			var envs []*envelope.Envelope
			for i := range n {
				e := newEnvelope(l.ID, "GET", fmt.Sprintf("/items/%d", i), "page=1", nil)
				e.Primary.Body, e.Primary.BodySize = []byte(body), int64(len(body))
				e.Primary.Headers = http.Header{"Content-Type": {"application/json"}}
				envs = append(envs, e)
				if len(envs) == batch || i == n-1 {
					publishBench(b, js, envs)
					envs = envs[:0]
				}
			}
		})
	}
	b.ReportMetric(0, "ns/op")
}

func publishBench(b *testing.B, js jetstream.JetStream, envs []*envelope.Envelope) {
	var m *nats.Msg
	if len(envs) == 1 {
		data, err := json.Marshal(envs[0])
		if err != nil {
			b.Fatal(err)
		}
		m = nats.NewMsg(stream.EnvelopeSubject(envs[0].LaunchID))
		m.Data = data
		m.Header.Set(nats.MsgIdHdr, envs[0].ID)
	} else {
		data, err := envelope.AppendEnvelopeBatch(nil, envs)
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, len(envs))
		for i, e := range envs {
			ids[i] = e.ID
		}
		m = nats.NewMsg(stream.EnvelopeSubject(envs[0].LaunchID))
		m.Header.Set(envelope.BatchHeader, envelope.BatchVersion)
		m.Header.Set(nats.MsgIdHdr, envelope.BatchID(ids))
		m.Data = data
	}
	stagetest.PublishAsync(b, js, m)
}
