package comparator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/stage/stagetest"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go/jetstream"
)

// TestConformance runs the stage suite on the real comparator: pairs
// compared and stored as rows in a real ClickHouse.
func TestConformance(t *testing.T) {
	chAddr := testenv.StartClickHouse(t)
	stagetest.Run(t, func(t *testing.T, natsURL string, js jetstream.JetStream) stagetest.Fixture {
		h := &harness{t: t, ctx: testenv.Context(t), js: js, addr: chAddr,
			db: "cmp_" + strings.ToLower(nonIdent.ReplaceAllString(t.Name(), "_"))}
		if len(h.db) > 60 {
			h.db = h.db[:60]
		}
		const launch = "l-conformance"
		publish := func(path string) string {
			p := newPair(launch, envelope.NewID(), path, 200, `{"a":1}`, 200, `{"a":2}`)
			h.publish(p, "")
			return p.Envelope.ID
		}
		return stagetest.Fixture{
			Name: Stage, Stream: stream.PairsStream, Consumer: stream.ComparatorConsumer,
			New: func(o stagetest.Options) stagetest.Instance {
				cfg := h.configFor(natsURL)
				cfg.ackWaitOverride = o.AckWait
				if o.Stall {
					cfg.FlushInterval = time.Hour // the batch is held until shutdown
				}
				svc, err := New(cfg, testenv.Logger(t, 0))
				if err != nil {
					t.Fatal(err)
				}
				if o.Panic {
					svc.buildRow = func(c compare.Comparer, p *envelope.Pair) (analytics.Row, error) {
						if p.Envelope.Request.Path == "/panic" {
							panic("comparator test panic")
						}
						return BuildRow(c, p)
					}
				}
				return svc
			},
			Publish:      func() string { return publish("/a") },
			PublishPanic: func() string { return publish("/panic") },
			Processed: func(id string) bool {
				var n uint64
				err := h.conn().QueryRow(h.ctx, fmt.Sprintf("SELECT count() FROM %s.comparisons WHERE envelope_id = ?", h.db), id).Scan(&n)
				return err == nil && n > 0
			},
			PublishBatch: func(good, bad int) []string {
				var pairs []*envelope.Pair
				var ids []string
				for i := range good {
					if i == bad {
						p := newPair(launch, envelope.NewID(), "/bad", 200, "", 200, "")
						p.V = 2 // not a pair this comparator reads
						pairs = append(pairs, p)
					}
					p := newPair(launch, envelope.NewID(), "/a", 200, `{"a":1}`, 200, `{"a":2}`)
					pairs = append(pairs, p)
					ids = append(ids, p.Envelope.ID)
				}
				h.publishBatch(pairs...)
				return ids
			},
			Subject: stream.PairSubject(launch), Undecodable: []byte("not a pair"), Reason: "malformed", ItemReason: "malformed",
		}
	})
}
