package launch

import (
	"fmt"
	"strings"
)

// Caps of a launch's fields, checked by Normalize (ErrInvalid naming the
// field), so that every launch fits the store and every tap's memory. The
// comparison rules have their own caps (compare.MaxRuleEntries,
// compare.MaxRulePathLen); the ramp's steps are capped in ramp.go.
const (
	MaxNameLen        = 200  // bytes of name
	MaxURLLen         = 2048 // bytes of shadow_url, secondary_url
	MaxStickyKeyLen   = 256  // bytes of sticky_key
	MaxPathPatterns   = 64   // entries of include_paths, of exclude_paths
	MaxPathPatternLen = 512  // bytes of one path pattern
	MaxMethods        = 16   // entries of methods (duplicates included)
	MaxReasonLen      = 500  // bytes of a change's reason (audit log)
	// MaxEncodedBytes bounds a launch as stored (JSON in the KV bucket,
	// escapes included); NATS refuses messages over its max payload (1 MiB
	// by default), and every tap and runner holds every launch.
	MaxEncodedBytes = 512 << 10
)

// checkCaps refuses a field over its cap.
func (l *Launch) checkCaps() error {
	for _, f := range []struct {
		field, value string
		max          int
	}{
		{"name", l.Name, MaxNameLen},
		{"shadow_url", l.ShadowURL, MaxURLLen},
		{"secondary_url", l.SecondaryURL, MaxURLLen},
		{"sticky_key", l.StickyKey, MaxStickyKeyLen},
	} {
		if err := checkLen(f.field, f.value, f.max); err != nil {
			return err
		}
	}
	if len(l.Methods) > MaxMethods {
		return fmt.Errorf("%w: methods has %d entries, at most %d are allowed", ErrInvalid, len(l.Methods), MaxMethods)
	}
	for _, f := range []struct {
		field    string
		patterns []string
	}{{"include_paths", l.IncludePaths}, {"exclude_paths", l.ExcludePaths}} {
		if len(f.patterns) > MaxPathPatterns {
			return fmt.Errorf("%w: %s has %d patterns, at most %d are allowed", ErrInvalid, f.field, len(f.patterns), MaxPathPatterns)
		}
		for i, p := range f.patterns {
			if err := checkLen(fmt.Sprintf("%s[%d]", f.field, i), p, MaxPathPatternLen); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLen refuses a value longer than max bytes, naming the field and
// showing the value's start only.
func checkLen(field, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%w: %s is %d bytes long (%.40q...), at most %d are allowed", ErrInvalid, field, len(v), v, max)
	}
	return nil
}

// CheckReason refuses a change's reason longer than MaxReasonLen bytes.
func CheckReason(reason string) error {
	return checkLen("reason", strings.TrimSpace(reason), MaxReasonLen)
}

// checkEncoded refuses a launch whose stored JSON is over MaxEncodedBytes.
func checkEncoded(id string, data []byte) error {
	if len(data) > MaxEncodedBytes {
		return fmt.Errorf("%w: launch %s is %d bytes as stored JSON (escapes included), at most %d are allowed: shorten its rules, patterns or names",
			ErrInvalid, id, len(data), MaxEncodedBytes)
	}
	return nil
}
