package runner

import (
	"testing"

	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// TestRunsOverTLSWithCredentials: with NATS_CA_FILE, NATS_CERT_FILE,
// NATS_KEY_FILE and NATS_CREDS_FILE, the runner (its stage runtime, its KV
// buckets, its pair publishes) works against a server that accepts only
// TLS with a client certificate and operator-issued user credentials.
func TestRunsOverTLSWithCredentials(t *testing.T) {
	srv := testenv.StartSecureJetStream(t)
	nc, js := testenv.ConnectWith(t, srv.Client)
	kv, err := launch.Setup(testenv.Context(t), js)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, nc: nc, js: js, store: launch.NewStore(kv), ctx: testenv.Context(t)}
	sh := newShadow(t, nil)
	l := h.createLaunch(sh.URL)

	cfg := DefaultConfig()
	cfg.NATS = srv.Client
	cfg.AdminAddr, cfg.ID = "127.0.0.1:0", "runner-tls"
	h.runReady(cfg)
	h.publishEnvelope(newEnvelope(l.ID, "GET", "/over-tls", "", nil))
	h.waitStreamMsgs(stream.PairsStream, 1)
	if p := h.pairs()[0]; p.Shadow.Status != 200 || p.RunnerID != "runner-tls" {
		t.Fatalf("pair %+v", p.Shadow)
	}
}
