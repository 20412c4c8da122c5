package compare

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

// Noise splits the shadow's diffs into real ones and noise: a shadow diff
// whose Path also differs between the primary and the secondary (a second
// instance of the primary's version) in the same request is noise, since
// the primary's own version is not deterministic there. Paths must match
// exactly (status and header diffs included); order is kept.
func Noise(shadow, secondary []Diff) (real, noise []Diff) {
	if len(secondary) == 0 {
		if len(shadow) == 0 {
			return nil, nil
		}
		return slices.Clone(shadow), nil
	}
	paths := make(map[string]struct{}, len(secondary))
	for _, d := range secondary {
		paths[d.Path] = struct{}{}
	}
	for _, d := range shadow {
		if _, ok := paths[d.Path]; ok {
			noise = append(noise, d)
		} else {
			real = append(real, d)
		}
	}
	return real, noise
}

// FingerprintLen is the length of a fingerprint, in hex digits.
const FingerprintLen = 16

// Fingerprint identifies a class of mismatches: a hex hash of the route and
// the set of (generalized path, kind) of the diffs, independent of their
// order and repetitions. A Diff without Generalized is generalized from
// its Path. It is "" when diffs is empty.
func Fingerprint(route string, diffs []Diff) string {
	if len(diffs) == 0 {
		return ""
	}
	type gk struct{ g, k string }
	keys := make([]gk, 0, len(diffs))
	for _, d := range diffs {
		g := d.Generalized
		if g == "" {
			g = Generalize(d.Path)
		}
		keys = append(keys, gk{g, d.Kind})
	}
	slices.SortFunc(keys, func(x, y gk) int {
		if x.g != y.g {
			if x.g < y.g {
				return -1
			}
			return 1
		}
		switch {
		case x.k < y.k:
			return -1
		case x.k > y.k:
			return 1
		}
		return 0
	})
	keys = slices.Compact(keys)
	h := sha256.New()
	// Length-prefixed fields: no choice of route or path can make two
	// different sets serialize alike.
	var n [binary.MaxVarintLen64]byte
	write := func(s string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	write(route)
	for _, k := range keys {
		write(k.g)
		write(k.k)
	}
	return hex.EncodeToString(h.Sum(nil)[:FingerprintLen/2])
}
