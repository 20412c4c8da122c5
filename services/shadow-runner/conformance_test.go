package runner

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stage/stagetest"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestConformance runs the stage suite on the real runner: envelopes of a
// real launch replayed against a real shadow, pairs in the pairs stream.
func TestConformance(t *testing.T) {
	stagetest.Run(t, func(t *testing.T, natsURL string, js jetstream.JetStream) stagetest.Fixture {
		ctx := testenv.Context(t)
		kv, err := launch.Setup(ctx, js)
		if err != nil {
			t.Fatal(err)
		}
		sh := newShadow(t, nil)
		l, err := launch.NewStore(kv).Create(ctx, launch.Launch{Name: "conformance", ShadowURL: sh.URL, SamplePercent: 100,
			Methods: []string{"GET"}})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		publish := func(path string) string {
			e := newEnvelope(l.ID, "GET", path, "", nil)
			data, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, stream.EnvelopeSubject(l.ID), data, jetstream.WithMsgID(e.ID)); err != nil {
				t.Fatal(err)
			}
			return e.ID
		}
		return stagetest.Fixture{
			Name: Stage, Stream: stream.EnvelopesStream, Consumer: stream.RunnerConsumer,
			New: func(o stagetest.Options) stagetest.Instance {
				n++
				cfg := DefaultConfig()
				cfg.NATSURL = natsURL
				cfg.AdminAddr = "127.0.0.1:0"
				cfg.Timeout = 5 * time.Second
				cfg.Concurrency = 8
				cfg.ID = fmt.Sprintf("conformance-%d", n)
				cfg.ackWaitOverride = o.AckWait
				svc, err := New(cfg, testLogger(t))
				if err != nil {
					t.Fatal(err)
				}
				// The faults are injected into the http.Client, so every
				// replay takes it.
				svc.direct.off = o.Stall || o.Panic
				if o.Stall {
					svc.client.Transport = slowTransport{svc.transport, 2 * time.Second}
				}
				if o.Panic {
					svc.client.Transport = panicTransport{svc.client.Transport}
				}
				return svc
			},
			Publish:      func() string { return publish("/conformance") },
			PublishPanic: func() string { return publish("/panic") },
			PublishBatch: func(good, bad int) []string {
				var envs []*envelope.Envelope
				var ids []string
				for i := range good {
					if i == bad {
						e := newEnvelope(l.ID, "GET", "/bad", "", nil)
						e.ReceivedAt = time.Time{} // fails validation
						envs = append(envs, e)
					}
					e := newEnvelope(l.ID, "GET", "/conformance", "", nil)
					envs = append(envs, e)
					ids = append(ids, e.ID)
				}
				publishEnvelopeBatch(t, js, stream.EnvelopeSubject(l.ID), envs...)
				return ids
			},
			Processed: func(id string) bool { return hasPair(t, js, id) },
			Subject:   stream.EnvelopeSubject(l.ID), Undecodable: []byte("not an envelope"), Reason: "malformed",
			ItemReason: "malformed",
		}
	})
}

// slowTransport holds every replay before sending it.
type slowTransport struct {
	rt    http.RoundTripper
	delay time.Duration
}

func (s slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(s.delay)
	return s.rt.RoundTrip(r)
}

// panicTransport panics on a replay of the path /panic, in the handler's
// goroutine (the client calls it directly), as a bug on one input would.
type panicTransport struct{ rt http.RoundTripper }

func (p panicTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/panic" {
		panic("runner test panic on " + r.URL.Path)
	}
	return p.rt.RoundTrip(r)
}

// hasPair reports whether the pairs stream holds the pair of envelope id:
// a single pair with it as Nats-Msg-Id, or an item of a pair batch.
func hasPair(t *testing.T, js jetstream.JetStream, id string) bool {
	ctx := testenv.Context(t)
	s, err := js.Stream(ctx, stream.PairsStream)
	if err != nil {
		return false
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return false
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if m.Header.Get(envelope.BatchHeader) == "" {
			if m.Header.Get(nats.MsgIdHdr) == id {
				return true
			}
			continue
		}
		pairs, _, err := envelope.DecodePairBatch(m.Data)
		for _, p := range pairs {
			if err == nil && p.Envelope.ID == id {
				return true
			}
		}
	}
	return false
}
