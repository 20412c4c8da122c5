package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/darklaunch/darklaunch/pkg/config"
)

// SecureJetStream is an embedded JetStream server that accepts only TLS
// connections with a client certificate its CA signed, from a user with a
// credentials file of its operator (decentralized JWT authentication, the
// way nsc sets up a production server). Client is the configuration a
// service connects with.
type SecureJetStream struct {
	*JetStream
	TLS    *TLSFiles
	Client config.NATS
}

// StartSecureJetStream starts it; it is shut down when the test ends.
func StartSecureJetStream(t testing.TB) *SecureJetStream {
	t.Helper()
	files := NewTLSFiles(t)
	system := must(t, nkeys.CreateAccount) // JetStream needs a system account
	systemPub := must(t, system.PublicKey)
	operator, opJWT := newOperator(t, systemPub)
	account := must(t, nkeys.CreateAccount)
	accountPub := must(t, account.PublicKey)
	ac := jwt.NewAccountClaims(accountPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accountJWT, err := ac.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	user := must(t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(must(t, user.PublicKey))
	userJWT, err := uc.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := user.Seed()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	systemJWT, err := jwt.NewAccountClaims(systemPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	for pub, token := range map[string]string{accountPub: accountJWT, systemPub: systemJWT} {
		if err := resolver.Store(pub, token); err != nil {
			t.Fatal(err)
		}
	}
	js := StartJetStream(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{opJWT}
		o.AccountResolver = resolver
		o.SystemAccount = systemPub
		o.TLS, o.TLSVerify, o.TLSConfig = true, true, files.ServerConfig(t, true)
	})
	return &SecureJetStream{JetStream: js, TLS: files, Client: config.NATS{
		NATSURL: js.URL(), NATSCredsFile: credsFile,
		NATSCAFile: files.CA, NATSCertFile: files.ClientCert, NATSKeyFile: files.ClientKey,
	}}
}

func newOperator(t testing.TB, systemAccount string) (nkeys.KeyPair, *jwt.OperatorClaims) {
	t.Helper()
	kp := must(t, nkeys.CreateOperator)
	oc := jwt.NewOperatorClaims(must(t, kp.PublicKey))
	oc.SystemAccount = systemAccount
	token := must(t, func() (string, error) { return oc.Encode(kp) })
	return kp, must(t, func() (*jwt.OperatorClaims, error) { return jwt.DecodeOperatorClaims(token) })
}

func must[T any](t testing.TB, f func() (T, error)) T {
	t.Helper()
	v, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
