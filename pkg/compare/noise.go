package compare

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

// Noise splits the shadow's diffs into real ones and noise, as Classify
// decides; order is kept.
func Noise(shadow, secondary []Diff) (real, noise []Diff) {
	diffs, flags := Classify(shadow, secondary)
	for i, d := range diffs {
		if flags[i] {
			noise = append(noise, d)
		} else {
			real = append(real, d)
		}
	}
	return real, noise
}

// Classify decides which of the shadow's diffs are noise, given the diffs
// between the primary and the secondary (a second instance of the
// primary's version) in the same request. It returns the shadow's diffs,
// in order, some of them changed (see below), and a flag per diff that is
// set for noise.
//
// A shadow diff whose Path also differs between primary and secondary is
// noise, since the primary's own version is not deterministic there
// (paths must match exactly, status and header diffs included), except:
//   - a missing_field or extra_field where the secondary's diff is of
//     another kind: the primary's version always has (or never has) the
//     field, the shadow's does not;
//   - a value whose shape the primary's version did not produce: when the
//     primary's and the secondary's values have one shape (the
//     secondary's Fits the primary's) and the shadow's does not fit it,
//     the diff is real and becomes a format_changed diff, its Generalized
//     path followed by the shapes (FormatChangedPath), so that a path
//     whose values are noise, and is suppressed as such, does not hide
//     it. This needs the shapes of both comparisons (Comparer.Shapes).
func Classify(shadow, secondary []Diff) (diffs []Diff, noise []bool) {
	if len(shadow) == 0 {
		return nil, nil
	}
	diffs = slices.Clone(shadow)
	noise = make([]bool, len(diffs))
	if len(secondary) == 0 {
		return diffs, noise
	}
	paths := make(map[string]int, len(secondary))
	for i, d := range secondary {
		if _, ok := paths[d.Path]; !ok {
			paths[d.Path] = i
		}
	}
	for i := range diffs {
		d := &diffs[i]
		j, ok := paths[d.Path]
		if !ok {
			continue
		}
		s := &secondary[j]
		switch {
		case (d.Kind == KindMissingField || d.Kind == KindExtraField) && s.Kind != d.Kind:
		case d.Before.Type != 0 && s.Before.Type != 0 && Fits(s.After, s.Before) && !Fits(d.After, d.Before):
			g := d.Generalized
			if g == "" {
				g = Generalize(d.Path)
			}
			d.Kind, d.Generalized = KindFormatChanged, FormatChangedPath(g, d.Before, d.After)
		default:
			noise[i] = true
		}
	}
	return diffs, noise
}

// FormatChangedPath is the Generalized path of a format_changed diff: the
// value's generalized path and the change of shape,
// "$.client (string/ip:port -> string/ipv4)". It is never the path of a
// noisy diff, so the suppression of a noisy path (which is by generalized
// path) does not apply to it.
func FormatChangedPath(generalized string, before, after Shape) string {
	return generalized + " (" + before.String() + " -> " + after.String() + ")"
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
