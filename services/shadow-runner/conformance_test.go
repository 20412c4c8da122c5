package runner

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

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
			Processed:    func(id string) bool { return hasMsgID(t, js, stream.PairsStream, id) },
			Subject:      stream.EnvelopeSubject(l.ID), Undecodable: []byte("not an envelope"), Reason: "malformed",
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

// hasMsgID reports whether a stream holds a message with this Nats-Msg-Id.
func hasMsgID(t *testing.T, js jetstream.JetStream, name, id string) bool {
	ctx := testenv.Context(t)
	s, err := js.Stream(ctx, name)
	if err != nil {
		return false
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return false
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil && m.Header.Get(nats.MsgIdHdr) == id {
			return true
		}
	}
	return false
}
