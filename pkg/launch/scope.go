package launch

import (
	"fmt"
	"strings"
)

// Scope is the authority a caller needs for an operation on launches, and
// the authority an API token grants. Scopes are ordered: a token of a
// higher scope may do everything a lower one may.
//
//	read     every read (GET): launches, reports, verdicts, examples
//	operate  pause, resume, roll back, change the sample percentage
//	admin    create, promote, change URLs, methods, rules, paths, sticky
//	         key, rate cap, ramp, gates and capture policy
type Scope int

const (
	ScopeRead Scope = iota + 1
	ScopeOperate
	ScopeAdmin
)

var scopeNames = map[Scope]string{ScopeRead: "read", ScopeOperate: "operate", ScopeAdmin: "admin"}

// String is the scope's name in a tokens file and in error messages.
func (s Scope) String() string {
	if n, ok := scopeNames[s]; ok {
		return n
	}
	return fmt.Sprintf("scope(%d)", int(s))
}

// Allows reports whether a caller holding s may do what needs want.
func (s Scope) Allows(want Scope) bool { return s >= want }

// ParseScope reads a scope's name: read, operate or admin.
func ParseScope(name string) (Scope, error) {
	for s, n := range scopeNames {
		if strings.EqualFold(name, n) {
			return s, nil
		}
	}
	return 0, fmt.Errorf("scope %q is not one of read, operate, admin", name)
}

// Scope is what an action needs: stopping or resuming the mirroring and
// rolling back are an operator's; promoting sends live users to the new
// version, and creating or patching may point traffic anywhere, so those
// are an admin's (a patch that only changes the sample percentage is an
// operator's: see Patch.Scope).
func (a Action) Scope() Scope {
	switch a {
	case ActionPause, ActionResume, ActionRollback:
		return ScopeOperate
	}
	return ScopeAdmin
}

// Scope is what applying the patch needs: operate when it changes only
// the sample percentage, admin when it touches anything else (URLs,
// methods, rules, paths, sticky key, rate cap, ramp, gates, capture
// policy or name).
func (p *Patch) Scope() Scope {
	rest := *p
	rest.SamplePercent = nil
	if rest.Empty() {
		return ScopeOperate
	}
	return ScopeAdmin
}
