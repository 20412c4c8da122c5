// Package seal encrypts the values of sensitive headers (credentials,
// cookies) in envelopes, so that JetStream streams and dead letters hold
// ciphertext only, and authenticates replayed requests (marker.go).
//
// Keys come from a key file shared by every tap and runner (keys.go). A
// value is sealed with AES-256-GCM under the file's current key; the
// sealed form names the key id, so a value sealed under any key still in
// the file can be opened after a rotation. The associated data binds a
// sealed value to its launch and header name: moved to another header or
// into another launch's envelope, it no longer opens.
//
// Sealed form (docs/envelope.md, "Sealed header values"):
//
//	dlseal:v1:<key id>:<base64url, no padding, of nonce (12 bytes) || ciphertext || tag (16 bytes)>
//
// with associated data "darklaunch-seal v1\n<key id>\n<launch id>\n<canonical header name>".
package seal

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Prefix starts every sealed value.
const Prefix = "dlseal:v1:"

// DefaultHeaders are the headers whose values are sealed unless configured
// otherwise.
var DefaultHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"}

var (
	// ErrUnknownKey: the value was sealed under a key id the key file does
	// not hold (the error names it).
	ErrUnknownKey = errors.New("sealed with an unknown key id")
	// ErrCorrupt: the sealed value does not parse or does not open (wrong
	// key, tampered, moved to another header or launch).
	ErrCorrupt = errors.New("sealed value does not open")
	// ErrNoKeys: a sealed value was found but no key file is configured.
	ErrNoKeys = errors.New("sealed value but no key file configured")
)

// IsSealed reports whether v is in sealed form.
func IsSealed(v string) bool { return strings.HasPrefix(v, Prefix) }

func aad(keyID, launchID, name string) []byte {
	return []byte("darklaunch-seal v1\n" + keyID + "\n" + launchID + "\n" + http.CanonicalHeaderKey(name))
}

// Seal returns value sealed under the current key for header name of an
// envelope of launchID.
func (k *Keys) Seal(launchID, name, value string) string {
	cur := k.current
	nonce := make([]byte, cur.aead.NonceSize(), cur.aead.NonceSize()+len(value)+cur.aead.Overhead())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (it panics instead)
	out := cur.aead.Seal(nonce, nonce, []byte(value), aad(cur.id, launchID, name))
	return Prefix + cur.id + ":" + base64.RawURLEncoding.EncodeToString(out)
}

// Open returns the clear value of a sealed one. The error wraps
// ErrUnknownKey or ErrCorrupt; it never contains the value.
func (k *Keys) Open(launchID, name, sealed string) (string, error) {
	rest, ok := strings.CutPrefix(sealed, Prefix)
	if !ok {
		return "", fmt.Errorf("%w: %s: not in sealed form", ErrCorrupt, name)
	}
	id, enc, ok := strings.Cut(rest, ":")
	if !ok {
		return "", fmt.Errorf("%w: %s: no key id", ErrCorrupt, name)
	}
	key := k.byID[id]
	if key == nil {
		return "", fmt.Errorf("%w: header %s sealed with key id %q; the key file has %s", ErrUnknownKey, name, id, strings.Join(k.ids, ", "))
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(raw) < key.aead.NonceSize()+key.aead.Overhead() {
		return "", fmt.Errorf("%w: header %s: bad encoding", ErrCorrupt, name)
	}
	n := key.aead.NonceSize()
	clear, err := key.aead.Open(nil, raw[:n], raw[n:], aad(id, launchID, name))
	if err != nil {
		return "", fmt.Errorf("%w: header %s (key id %q): authentication failed", ErrCorrupt, name, id)
	}
	return string(clear), nil
}

// SealHeader replaces, in h, every value of the headers in names (canonical
// names) with its sealed form. Values already sealed are left alone.
func (k *Keys) SealHeader(launchID string, h http.Header, names []string) {
	for _, name := range names {
		vs := h[name]
		if len(vs) == 0 {
			continue
		}
		sealed := make([]string, len(vs))
		for i, v := range vs {
			if IsSealed(v) {
				sealed[i] = v
			} else {
				sealed[i] = k.Seal(launchID, name, v)
			}
		}
		h[name] = sealed
	}
}

// HasSealed reports whether any value of h is sealed.
func HasSealed(h http.Header) bool {
	for _, vs := range h {
		for _, v := range vs {
			if IsSealed(v) {
				return true
			}
		}
	}
	return false
}

// OpenHeader returns h with every sealed value opened: h itself when it
// holds none, otherwise a copy (h is left sealed). k may be nil: a header
// with sealed values then fails with ErrNoKeys.
func (k *Keys) OpenHeader(launchID string, h http.Header) (http.Header, error) {
	var out http.Header
	for name, vs := range h {
		for i, v := range vs {
			if !IsSealed(v) {
				continue
			}
			if k == nil {
				return nil, fmt.Errorf("%w: header %s is sealed", ErrNoKeys, name)
			}
			clear, err := k.Open(launchID, name, v)
			if err != nil {
				return nil, err
			}
			if out == nil {
				out = h.Clone() // copies the value slices too
			}
			out[name][i] = clear
		}
	}
	if out == nil {
		return h, nil
	}
	return out, nil
}
