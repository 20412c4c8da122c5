package seal

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// ErrKeyFile wraps every key file error.
var ErrKeyFile = errors.New("invalid seal key file")

// Keys are the keys of one key file: one current key seals, every key
// opens.
//
// Key file format: UTF-8 text, one key per line, "#" starts a comment,
// blank lines are ignored:
//
//	<key id> <base64 of 32 random bytes> [current]
//
// A key id is 1 to 32 letters, digits, '-' or '_'. Exactly one key is
// marked current (a file with a single key may leave the mark out). The
// key is standard base64 with padding (head -c 32 /dev/urandom | base64).
// Rotate by adding the new key to every tap's and runner's file, then
// moving the mark to it; remove the old key once no stream holds values
// sealed under it (24 h, the streams' max age).
type Keys struct {
	current *key
	byID    map[string]*key
	ids     []string
}

type key struct {
	id   string
	aead cipher.AEAD
	mac  []byte // the replay marker's HMAC key, derived from the key
}

var keyID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Load reads a key file.
func Load(path string) (*Keys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Parse reads a key file's content. Errors name the line, never a key.
func Parse(data []byte) (*Keys, error) {
	k := &Keys{byID: map[string]*key{}}
	var marked []*key
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) > 3 || len(f) < 2 || (len(f) == 3 && f[2] != "current") {
			return nil, fmt.Errorf("%w: line %d: want \"<key id> <base64 key> [current]\"", ErrKeyFile, n)
		}
		if !keyID.MatchString(f[0]) {
			return nil, fmt.Errorf("%w: line %d: key id %q must be 1-32 letters, digits, '-' or '_'", ErrKeyFile, n, f[0])
		}
		if k.byID[f[0]] != nil {
			return nil, fmt.Errorf("%w: line %d: key id %q listed twice", ErrKeyFile, n, f[0])
		}
		raw, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("%w: line %d: key %q is not the base64 of 32 bytes", ErrKeyFile, n, f[0])
		}
		kk, err := newKey(f[0], raw)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrKeyFile, n, err)
		}
		k.byID[kk.id] = kk
		k.ids = append(k.ids, kk.id)
		if len(f) == 3 {
			marked = append(marked, kk)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	switch {
	case len(k.ids) == 0:
		return nil, fmt.Errorf("%w: no key", ErrKeyFile)
	case len(marked) > 1:
		return nil, fmt.Errorf("%w: %d keys are marked current, want one", ErrKeyFile, len(marked))
	case len(marked) == 1:
		k.current = marked[0]
	case len(k.ids) == 1:
		k.current = k.byID[k.ids[0]]
	default:
		return nil, fmt.Errorf("%w: %d keys and none marked current", ErrKeyFile, len(k.ids))
	}
	return k, nil
}

func newKey(id string, raw []byte) (*key, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	mac, err := hkdf.Key(sha256.New, raw, nil, "darklaunch replay marker v1", 32)
	if err != nil {
		return nil, err
	}
	return &key{id: id, aead: aead, mac: mac}, nil
}

// CurrentID is the id of the key that seals.
func (k *Keys) CurrentID() string { return k.current.id }

// IDs are the key ids of the file, in file order.
func (k *Keys) IDs() []string { return k.ids }
