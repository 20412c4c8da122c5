package comparator

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/service"
	"github.com/darklaunch/darklaunch/pkg/stage/stagetest"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMain runs the comparator itself when started by stagetest.StartChild.
func TestMain(m *testing.M) {
	if os.Getenv(stagetest.ChildEnv) != "" {
		os.Exit(stagetest.RunChild(func() int { return service.Main("comparator", DefaultConfig(), New) }))
	}
	os.Exit(m.Run())
}

// BenchmarkCPUPerPair measures the CPU time the comparator process spends
// per pair (µs/pair) and its pairs/s, the comparator alone in a child
// process (NATS and the publisher in the test process, ClickHouse in its
// own), on 1 KiB JSON bodies, one pair in ten with a difference: pairs
// published one per message (v1) and in batches of 100 (as the runner
// does). Run with -benchtime 1x; PAIRS sets the count (default 20000).
func BenchmarkCPUPerPair(b *testing.B) {
	chAddr := testenv.StartClickHouse(b)
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchCPU(b, chAddr, batch) })
	}
}

func benchCPU(b *testing.B, chAddr string, batch int) {
	n := 20000
	if _, err := fmt.Sscan(os.Getenv("PAIRS"), &n); err != nil || n <= 0 {
		n = 20000
	}
	ns := testenv.StartJetStream(b)
	_, js := testenv.Connect(b, ns.URL())
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	child := stagetest.StartChild(b, "NATS_URL="+ns.URL(), "CLICKHOUSE_ADDR="+chAddr,
		fmt.Sprintf("CLICKHOUSE_DATABASE=bench_%d_%d", batch, time.Now().UnixNano()),
		"COMPARATOR_ADMIN_ADDR="+admin, "LOG_LEVEL=warn")
	ctx := testenv.Context(b)
	testenv.CheckFor(b, 60*time.Second, 20*time.Millisecond, func() error {
		_, err := js.Consumer(ctx, stream.PairsStream, stream.ComparatorConsumer)
		return err
	})
	item := `{"id":12345,"name":"widget","price":9.99}`
	body := `{"items":[` + strings.Repeat(item+",", 23) + `{"id":0}]}`
	for b.Loop() {
		stagetest.MeasureCPU(b, child, js, admin, "darklaunch_comparator_rows_inserted_total", n, func() {
			var pairs []*envelope.Pair
			for i := range n {
				shadow := body
				if i%10 == 0 {
					shadow = strings.Replace(body, "9.99", "10.99", 1)
				}
				pairs = append(pairs, newPair("l-bench", envelope.NewID(), fmt.Sprintf("/items/%d", i), 200, body, 200, shadow))
				if len(pairs) == batch || i == n-1 {
					publishPairs(b, js, pairs)
					pairs = pairs[:0]
				}
			}
		})
	}
	b.ReportMetric(0, "ns/op")
}

func publishPairs(b *testing.B, js jetstream.JetStream, pairs []*envelope.Pair) {
	m := nats.NewMsg(stream.PairSubject(pairs[0].Envelope.LaunchID))
	if len(pairs) == 1 {
		data, err := json.Marshal(pairs[0])
		if err != nil {
			b.Fatal(err)
		}
		m.Data = data
		m.Header.Set(nats.MsgIdHdr, pairs[0].Envelope.ID)
	} else {
		data, err := envelope.AppendPairBatch(nil, pairs)
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, len(pairs))
		for i, p := range pairs {
			ids[i] = p.Envelope.ID
		}
		m.Data = data
		m.Header.Set(envelope.BatchHeader, envelope.BatchVersion)
		m.Header.Set(nats.MsgIdHdr, envelope.BatchID(ids))
	}
	stagetest.PublishAsync(b, js, m)
}
