package testenv

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/seal"
)

// SealKeys writes a seal key file with one fresh key, id, marked current,
// into a temporary directory, and returns its path and the loaded keys.
func SealKeys(t testing.TB, id string) (string, *seal.Keys) {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	path := filepath.Join(t.TempDir(), "seal-keys")
	line := "# test key\n" + id + " " + base64.StdEncoding.EncodeToString(raw) + " current\n"
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := seal.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, keys
}
