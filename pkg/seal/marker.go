package seal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HeaderReplay carries a replayed request's proof that a runner holding
// the key file sent it (X-Darklaunch-Shadow alone can be sent by anyone):
//
//	v1.<key id>.<unix seconds>.<base64url, no padding, of HMAC-SHA256(mac key, "v1\n<key id>\n<unix seconds>\n<method>\n<request target>")>
//
// The mac key is HKDF-SHA256 of the key (no salt, info "darklaunch replay
// marker v1", 32 bytes); the request target is the path and query as sent
// on the request line (Go's URL.RequestURI()).
const HeaderReplay = "X-Darklaunch-Replay"

// MarkerWindow is how far a marker's time may be from the verifier's clock.
const MarkerWindow = 5 * time.Minute

// ErrMarker wraps every marker verification failure.
var ErrMarker = errors.New("replay marker does not verify")

func (k *key) markerMAC(ts, method, target string) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte("v1\n" + k.id + "\n" + ts + "\n" + method + "\n" + target))
	return m.Sum(nil)
}

// Marker returns the X-Darklaunch-Replay value for a request, under the
// current key.
func (k *Keys) Marker(method, target string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return "v1." + k.current.id + "." + ts + "." + base64.RawURLEncoding.EncodeToString(k.current.markerMAC(ts, method, target))
}

// VerifyMarker checks an X-Darklaunch-Replay value against the request's
// method and target (its RequestURI as received). The MAC is compared in
// constant time.
func (k *Keys) VerifyMarker(v, method, target string, now time.Time) error {
	f := strings.Split(v, ".")
	if len(f) != 4 || f[0] != "v1" {
		return fmt.Errorf("%w: not a v1 marker", ErrMarker)
	}
	key := k.byID[f[1]]
	if key == nil {
		return fmt.Errorf("%w: unknown key id %q", ErrMarker, f[1])
	}
	sec, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad time", ErrMarker)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MarkerWindow || d < -MarkerWindow {
		return fmt.Errorf("%w: time %s is more than %s away", ErrMarker, time.Unix(sec, 0).UTC().Format(time.RFC3339), MarkerWindow)
	}
	got, err := base64.RawURLEncoding.DecodeString(f[3])
	if err != nil || !hmac.Equal(got, key.markerMAC(f[2], method, target)) {
		return fmt.Errorf("%w: MAC mismatch", ErrMarker)
	}
	return nil
}
