package runner

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// TestOversizedPairIsFitted: an envelope whose pair would exceed the NATS
// max payload (a 700 KiB primary body and a 700 KiB shadow body, 1 MiB
// limit) is replayed once and published with its bodies cut to fit and
// flagged body_truncated (sizes kept), not retried until max_deliver.
func TestOversizedPairIsFitted(t *testing.T) {
	h := newHarness(t)
	const n = 700 << 10
	big := bytes.Repeat([]byte("s"), n)
	sh := newShadow(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(big) })
	l := h.createLaunch(sh.URL)
	r := h.runReady(h.testConfig("runner-fit"))

	e := newEnvelope(l.ID, "GET", "/big", "", nil)
	e.Primary.Body, e.Primary.BodySize = bytes.Repeat([]byte("p"), n), n
	h.publishEnvelope(e)
	h.waitStreamMsgs(stream.PairsStream, 1)
	h.waitStreamMsgs(stream.EnvelopesStream, 0)

	msgs := h.rawMsgs(stream.PairsStream)
	if max := h.nc.MaxPayload(); int64(len(msgs[0].Data)) > max {
		t.Fatalf("pair of %d bytes over the max payload %d", len(msgs[0].Data), max)
	}
	p := h.pairs()[0]
	if !p.Shadow.BodyTruncated || !p.Envelope.Primary.BodyTruncated || p.Shadow.BodySize != n || p.Envelope.Primary.BodySize != n {
		t.Errorf("shadow truncated %v size %d, primary truncated %v size %d; want both cut, sizes %d",
			p.Shadow.BodyTruncated, p.Shadow.BodySize, p.Envelope.Primary.BodyTruncated, p.Envelope.Primary.BodySize, n)
	}
	if len(p.Shadow.Body) < n/4 || len(p.Envelope.Primary.Body) < n/4 {
		t.Errorf("kept %d and %d bytes: the room was not shared", len(p.Shadow.Body), len(p.Envelope.Primary.Body))
	}
	if got := len(sh.requests()); got != 1 {
		t.Errorf("shadow got %d replays, want 1", got)
	}
	st := r.Stats()
	if st.PairsTruncated != 1 || st.Naks != 0 || st.DeadLettered != 0 || st.Received != 1 {
		t.Errorf("stats %+v", st)
	}
	testenv.WantMetrics(t, r.AdminAddr(), "darklaunch_shadow_runner_pairs_truncated_total 1",
		`darklaunch_shadow_runner_dead_lettered_total{reason="too_large"} 0`)
}
