package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkThroughput measures envelopes replayed, published and acked per
// second by one runner against a shadow that answers at once, so the
// runner's own work (fetching, replaying, publishing, acking) dominates.
// The envelopes are queued before the runner starts.
func BenchmarkThroughput(b *testing.B) {
	for _, conc := range []int{8, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) { benchThroughput(b, conc) })
	}
}

func benchThroughput(b *testing.B, concurrency int) {
	const n = 5000
	srv := testenv.StartJetStream(b)
	_, js := testenv.Connect(b, srv.URL())
	ctx := testenv.Context(b)
	kv, err := launch.OpenBucket(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer shadow.Close()
	l, err := launch.NewStore(kv).Create(ctx, launch.Launch{Name: "bench", ShadowURL: shadow.URL, SamplePercent: 100})
	if err != nil {
		b.Fatal(err)
	}

	var total time.Duration
	for range b.N {
		for i := range n {
			e := newEnvelope(l.ID, "GET", fmt.Sprintf("/item/%d", i), "", nil)
			data, _ := json.Marshal(e)
			if _, err := js.PublishAsync(stream.EnvelopeSubject(l.ID), data, jetstream.WithMsgID(e.ID)); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		cfg := DefaultConfig()
		cfg.NATSURL = srv.URL()
		cfg.AdminAddr = "127.0.0.1:0"
		cfg.Concurrency = concurrency
		cfg.ID = "bench"
		svc, err := New(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		run := testenv.Run(b, svc.Run)
		<-svc.Ready()
		start := time.Now()
		for svc.Stats().PairsPublished < n {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		if err := run.Stop(); err != nil {
			b.Fatal(err)
		}
		// Empty the pairs stream for the next round.
		ps, err := js.Stream(ctx, stream.PairsStream)
		if err != nil {
			b.Fatal(err)
		}
		if err := ps.Purge(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "envelopes/s")
	b.ReportMetric(0, "ns/op")
}
