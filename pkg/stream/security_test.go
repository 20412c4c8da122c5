package stream_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// dial connects once, without the retries of Connect, so a refusal is an
// error.
func dial(cfg config.NATS) (*nats.Conn, error) {
	opts, err := stream.Security(cfg)
	if err != nil {
		return nil, err
	}
	return nats.Connect(cfg.NATSURL, append(opts, nats.Timeout(5*time.Second))...)
}

// TestConnectTLSAndCredentials: against a server that requires TLS with a
// client certificate and a user JWT of its operator, Connect with the CA,
// the client certificate and the credentials file works, JetStream
// included; without any one of them the server refuses.
func TestConnectTLSAndCredentials(t *testing.T) {
	srv := testenv.StartSecureJetStream(t)
	nc, err := stream.Connect(srv.Client, "secure-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(testenv.Context(t), js); err != nil {
		t.Fatalf("JetStream over TLS with credentials: %v", err)
	}
	if st := nc.ConnectedUrlRedacted(); nc.Status() != nats.CONNECTED || nc.TLSRequired() == false {
		t.Fatalf("status %s at %s, tls %v", nc.Status(), st, nc.TLSRequired())
	}

	for name, change := range map[string]func(*config.NATS){
		"no credentials":        func(c *config.NATS) { c.NATSCredsFile = "" },
		"no client certificate": func(c *config.NATS) { c.NATSCertFile, c.NATSKeyFile = "", "" },
		"another CA":            func(c *config.NATS) { c.NATSCAFile = srv.TLS.OtherCA },
		"no TLS at all":         func(c *config.NATS) { c.NATSCAFile, c.NATSCertFile, c.NATSKeyFile = "", "", "" },
	} {
		cfg := srv.Client
		change(&cfg)
		if nc, err := dial(cfg); err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		}
	}
}

// TestConnectNKey: a server that knows a user by its nkey accepts a
// client with its seed file and refuses another seed.
func TestConnectNKey(t *testing.T) {
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	srv := testenv.StartJetStream(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	seedFile := func(kp nkeys.KeyPair) string {
		seed, _ := kp.Seed()
		f := filepath.Join(t.TempDir(), "user.nk")
		if err := os.WriteFile(f, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	nc, err := dial(config.NATS{NATSURL: srv.URL(), NATSNKeyFile: seedFile(user)})
	if err != nil {
		t.Fatalf("with the seed: %v", err)
	}
	nc.Close()
	other, _ := nkeys.CreateUser()
	if nc, err := dial(config.NATS{NATSURL: srv.URL(), NATSNKeyFile: seedFile(other)}); err == nil {
		nc.Close()
		t.Error("connected with another user's seed")
	}
	if nc, err := dial(config.NATS{NATSURL: srv.URL()}); err == nil {
		nc.Close()
		t.Error("connected without a seed")
	}
}

// TestSecuritySettingsChecked: bad files fail at once, with ErrTLS.
func TestSecuritySettingsChecked(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	for name, cfg := range map[string]config.NATS{
		"missing creds":       {NATSCredsFile: "/nonexistent/user.creds"},
		"creds and nkey":      {NATSCredsFile: files.CA, NATSNKeyFile: files.CA},
		"cert without key":    {NATSCertFile: files.ClientCert},
		"CA not PEM":          {NATSCAFile: "/etc/hostname"},
		"key of another cert": {NATSCertFile: files.ClientCert, NATSKeyFile: files.ServerKey},
		"nkey not a seed":     {NATSNKeyFile: files.CA},
	} {
		cfg.NATSURL = "nats://127.0.0.1:1"
		if _, err := stream.Connect(cfg, "bad", nil); !errors.Is(err, config.ErrTLS) {
			t.Errorf("%s: %v, want ErrTLS", name, err)
		}
	}
}
