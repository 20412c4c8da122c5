package launch

import (
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Buckets is the number of sticky sampling buckets: a percentage is exact
// to 100/Buckets = 0.01%.
const Buckets = 10000

// Sticky key sources, the part of sticky_key before the colon.
const (
	StickyHeader = "header"
	StickyCookie = "cookie"
	StickyQuery  = "query"
)

// StickyKey says which part of a request identifies its user, parsed from
// "header:X-User-Id", "cookie:session" or "query:user".
type StickyKey struct {
	Source, Name string
}

// ParseStickyKey parses a sticky_key setting; "" means random sampling.
func ParseStickyKey(s string) (StickyKey, error) {
	if s == "" {
		return StickyKey{}, nil
	}
	src, name, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || (src != StickyHeader && src != StickyCookie && src != StickyQuery) {
		return StickyKey{}, fmt.Errorf("%w: sticky_key %q must be header:<name>, cookie:<name> or query:<name>", ErrInvalid, s)
	}
	if src == StickyHeader {
		name = http.CanonicalHeaderKey(name)
	}
	return StickyKey{Source: src, Name: name}, nil
}

// Value returns the request's value for the key, and whether it had one.
func (k StickyKey) Value(r *http.Request) (string, bool) {
	switch k.Source {
	case StickyHeader:
		v := r.Header.Get(k.Name)
		return v, v != ""
	case StickyCookie:
		c, err := r.Cookie(k.Name)
		if err != nil || c.Value == "" {
			return "", false
		}
		return c.Value, true
	case StickyQuery:
		v := r.URL.Query().Get(k.Name)
		return v, v != ""
	}
	return "", false
}

// UserBucket places a user of a launch in one of Buckets buckets. The launch id
// is part of the hash so that one user is not in the sample of every launch.
func UserBucket(launchID, user string) uint32 {
	d := xxhash.New()
	_, _ = d.WriteString(launchID)
	_, _ = d.WriteString("\x00")
	_, _ = d.WriteString(user)
	return uint32(d.Sum64() % Buckets)
}

// InSample reports whether a bucket falls within a percentage: buckets
// below percent×Buckets/100 are in, so raising the percentage only adds
// buckets (users), never swaps them.
func InSample(bucket uint32, percent float64) bool {
	return float64(bucket) < percent*Buckets/100
}

// validatePathPatterns checks include/exclude patterns: path.Match globs
// ("/api/*/items": * stays within a segment), or a prefix ending in "/**"
// ("/api/**": the prefix and everything below it).
func validatePathPatterns(field string, patterns []string) error {
	for i, p := range patterns {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%w: %s[%d] %q must start with /", ErrInvalid, field, i, p)
		}
		if _, err := path.Match(strings.TrimSuffix(p, "/**"), "/"); err != nil {
			return fmt.Errorf("%w: %s[%d] %q is not a valid pattern: %v", ErrInvalid, field, i, p, err)
		}
	}
	return nil
}

// MatchPath reports whether p matches a pattern (see validatePathPatterns).
func MatchPath(pattern, p string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/**"); ok {
		if prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
		ok, _ := path.Match(prefix, p)
		return ok
	}
	ok, _ := path.Match(pattern, p)
	return ok
}

// PathAllowed applies the launch's include and exclude patterns: a path is
// mirrored when it matches an include pattern (or there are none) and no
// exclude pattern.
func (l *Launch) PathAllowed(p string) bool {
	if len(l.IncludePaths) > 0 {
		in := false
		for _, pat := range l.IncludePaths {
			if MatchPath(pat, p) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, pat := range l.ExcludePaths {
		if MatchPath(pat, p) {
			return false
		}
	}
	return true
}
