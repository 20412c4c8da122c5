package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSFiles are a throwaway CA and a server and a client certificate it
// signed, as PEM files in a temporary directory: the server's is valid for
// 127.0.0.1, ::1 and localhost.
type TLSFiles struct {
	CA                    string // the CA's certificate
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	OtherCA               string // a CA that signed neither
}

// NewTLSFiles generates the files; they are removed when the test ends.
func NewTLSFiles(t testing.TB) *TLSFiles {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "darklaunch test CA", true)
	other, _ := newCert(t, nil, nil, "another CA", true)
	srv, srvKey := newCert(t, ca, caKey, "localhost", false)
	cli, cliKey := newCert(t, ca, caKey, "darklaunch test client", false)
	f := &TLSFiles{
		CA: filepath.Join(dir, "ca.pem"), OtherCA: filepath.Join(dir, "other-ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
	}
	writePEM(t, f.CA, "CERTIFICATE", ca.Raw)
	writePEM(t, f.OtherCA, "CERTIFICATE", other.Raw)
	writePEM(t, f.ServerCert, "CERTIFICATE", srv.Raw)
	writePEM(t, f.ServerKey, "EC PRIVATE KEY", marshalKey(t, srvKey))
	writePEM(t, f.ClientCert, "CERTIFICATE", cli.Raw)
	writePEM(t, f.ClientKey, "EC PRIVATE KEY", marshalKey(t, cliKey))
	return f
}

// ServerConfig is a server's TLS configuration with these files; with
// verifyClients, a client must present a certificate the CA signed.
func (f *TLSFiles) ServerConfig(t testing.TB, verifyClients bool) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if verifyClients {
		pool := x509.NewCertPool()
		pemData, err := os.ReadFile(f.CA)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(pemData)
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c
}

func newCert(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	} else {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	}
	der := must(t, func() ([]byte, error) {
		return x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	})
	return must(t, func() (*x509.Certificate, error) { return x509.ParseCertificate(der) }), key
}

func marshalKey(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
