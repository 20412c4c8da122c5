package seal

import (
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
)

func keyLine(id string, b byte, current bool) string {
	k := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune(b)), 32)))
	if current {
		return id + " " + k + " current\n"
	}
	return id + " " + k + "\n"
}

func mustParse(t *testing.T, s string) *Keys {
	t.Helper()
	k, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseKeyFile(t *testing.T) {
	k := mustParse(t, "# keys\n\n"+keyLine("old", 'a', false)+keyLine("new", 'b', true))
	if k.CurrentID() != "new" || strings.Join(k.IDs(), ",") != "old,new" {
		t.Fatalf("current %s ids %v", k.CurrentID(), k.IDs())
	}
	if mustParse(t, keyLine("only", 'a', false)).CurrentID() != "only" {
		t.Fatal("a single key is current")
	}
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	for name, file := range map[string]string{
		"empty":        "# nothing\n",
		"no current":   keyLine("a", 'a', false) + keyLine("b", 'b', false),
		"two current":  keyLine("a", 'a', true) + keyLine("b", 'b', true),
		"duplicate id": keyLine("a", 'a', false) + keyLine("a", 'b', true),
		"short key":    "a " + base64.StdEncoding.EncodeToString([]byte("short")) + "\n",
		"bad id":       "a/b " + secret + "\n",
		"bad mark":     "a " + secret + " primary\n",
	} {
		_, err := Parse([]byte(file))
		if !errors.Is(err, ErrKeyFile) {
			t.Errorf("%s: err %v, want ErrKeyFile", name, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the key: %v", name, err)
		}
	}
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(keyLine("k1", 'c', true)), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := Load(path); err != nil || k.CurrentID() != "k1" {
		t.Fatalf("Load: %v", err)
	}
	if _, err := Load(path + ".missing"); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSealOpenRoundTripAndRotation(t *testing.T) {
	before := mustParse(t, keyLine("k1", 'a', true))
	rotated := mustParse(t, keyLine("k1", 'a', false)+keyLine("k2", 'b', true))
	sealed := before.Seal("L1", "Authorization", "Bearer secret-token")
	if !IsSealed(sealed) || strings.Contains(sealed, "secret") || !strings.HasPrefix(sealed, Prefix+"k1:") {
		t.Fatalf("sealed %q", sealed)
	}
	if sealed == before.Seal("L1", "Authorization", "Bearer secret-token") {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	for _, k := range []*Keys{before, rotated} {
		if v, err := k.Open("L1", "authorization", sealed); err != nil || v != "Bearer secret-token" {
			t.Fatalf("Open = %q, %v", v, err)
		}
	}
	if !strings.HasPrefix(rotated.Seal("L1", "Cookie", "a=b"), Prefix+"k2:") {
		t.Fatal("the current key seals")
	}
	// Another launch, another header, another key, a flipped byte: no.
	for name, try := range map[string]func() error{
		"launch":  func() error { _, err := before.Open("L2", "Authorization", sealed); return err },
		"header":  func() error { _, err := before.Open("L1", "Cookie", sealed); return err },
		"flipped": func() error { _, err := before.Open("L1", "Authorization", sealed[:len(sealed)-2]+"AA"); return err },
		"garbage": func() error { _, err := before.Open("L1", "Authorization", Prefix+"k1:!!"); return err },
	} {
		if err := try(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	newer := mustParse(t, keyLine("k9", 'z', true))
	_, err := newer.Open("L1", "Authorization", sealed)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestSealAndOpenHeader(t *testing.T) {
	k := mustParse(t, keyLine("k1", 'a', true))
	h := http.Header{"Authorization": {"Bearer t"}, "Cookie": {"a=1", "b=2"}, "Accept": {"*/*"}}
	k.SealHeader("L", h, DefaultHeaders)
	if IsSealed(h.Get("Accept")) || !IsSealed(h["Cookie"][1]) || !IsSealed(h.Get("Authorization")) {
		t.Fatalf("sealed %v", h)
	}
	if !HasSealed(h) || HasSealed(http.Header{"A": {"b"}}) {
		t.Fatal("HasSealed")
	}
	sealedCookie := h["Cookie"][0]
	open, err := k.OpenHeader("L", h)
	if err != nil {
		t.Fatal(err)
	}
	if open.Get("Authorization") != "Bearer t" || open["Cookie"][1] != "b=2" || open.Get("Accept") != "*/*" {
		t.Fatalf("opened %v", open)
	}
	if h["Cookie"][0] != sealedCookie {
		t.Fatal("OpenHeader changed its input")
	}
	plain := http.Header{"Accept": {"*/*"}}
	if got, err := (*Keys)(nil).OpenHeader("L", plain); err != nil || got.Get("Accept") != "*/*" {
		t.Fatalf("no sealed values, no keys: %v %v", got, err)
	}
	if _, err := (*Keys)(nil).OpenHeader("L", h); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("sealed values, no keys: %v", err)
	}
}

func TestMarker(t *testing.T) {
	k := mustParse(t, keyLine("k1", 'a', true))
	now := time.Unix(1_800_000_000, 0)
	m := k.Marker("GET", "/a?b=c", now)
	if err := k.VerifyMarker(m, "GET", "/a?b=c", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	other := mustParse(t, keyLine("k1", 'b', true))
	for name, err := range map[string]error{
		"method":    k.VerifyMarker(m, "POST", "/a?b=c", now),
		"target":    k.VerifyMarker(m, "GET", "/a?b=d", now),
		"old":       k.VerifyMarker(m, "GET", "/a?b=c", now.Add(MarkerWindow+time.Second)),
		"other key": other.VerifyMarker(m, "GET", "/a?b=c", now),
		"forged":    k.VerifyMarker("1", "GET", "/a?b=c", now),
		"unknown":   k.VerifyMarker(strings.Replace(m, "k1", "k2", 1), "GET", "/a?b=c", now),
	} {
		if !errors.Is(err, ErrMarker) {
			t.Errorf("%s: %v, want ErrMarker", name, err)
		}
	}
}

// The headers sealed by default are the ones examples redact by default:
// one notion of a sensitive header.
func TestDefaultHeadersAreTheRedactedOnes(t *testing.T) {
	if !slices.Equal(DefaultHeaders, compare.DefaultRedactHeaders) {
		t.Fatalf("seal.DefaultHeaders %v, compare.DefaultRedactHeaders %v", DefaultHeaders, compare.DefaultRedactHeaders)
	}
}
