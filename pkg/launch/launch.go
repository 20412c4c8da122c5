// Package launch holds the launch model (what to mirror, where, how much),
// its state machine and its store.
//
// The state machine is the launch's methods (transition.go, patch.go):
// Pause, Resume, Rollback, Promote, AdvanceStep, AdvanceLive and
// ApplyPatch make a change with all of its side effects (live_percent,
// ramp_step, step_started_at, sample_percent) or refuse it with a
// *TransitionError that matches ErrConflict. The reporter's API handlers
// and its ramp controller both call them.
//
// The store keeps one key per launch in a NATS KV bucket, updated with
// optimistic concurrency. Taps watch the bucket, so a change reaches every
// mirror without restart.
package launch

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/netpolicy"
)

// Status is where a launch is in its life.
type Status string

const (
	StatusActive     Status = "active"
	StatusPaused     Status = "paused"
	StatusPromoted   Status = "promoted"
	StatusRolledBack Status = "rolled_back"
	// StatusPromoting: the new version serves LivePercent of live traffic
	// (sticky by StickyKey) and the launch steps towards 100%.
	StatusPromoting Status = "promoting"
)

// DefaultMethods are the methods mirrored when a launch names none: safe
// methods only, since replaying a write against a shadow may have effects.
var DefaultMethods = []string{"GET", "HEAD", "OPTIONS"}

// KnownMethods are the methods a launch may list.
var KnownMethods = []string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"}

// DefaultService is the service a launch belongs to when it names none.
const DefaultService = "default"

var (
	// ErrInvalid wraps every validation error: the caller's input is wrong.
	ErrInvalid = errors.New("invalid launch")
	// ErrNotFound is returned for an unknown launch id.
	ErrNotFound = errors.New("launch not found")
	// ErrConflict is returned when a state change is not allowed from the
	// launch's current status (e.g. resuming a rolled-back launch); the
	// error is a *TransitionError that says which (transition.go).
	ErrConflict = errors.New("launch state conflict")
)

// Launch is one dark launch: a shadow version of a service receiving a
// sample of that service's production traffic.
type Launch struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Service   string `json:"service"`
	ShadowURL string `json:"shadow_url"`
	// SecondaryURL, when set, is a second instance of the primary's version
	// (or the primary itself, for safe methods): runners replay each
	// envelope to it too, and differences between primary and secondary in
	// the same request are noise, not regressions.
	SecondaryURL  string  `json:"secondary_url,omitempty"`
	SamplePercent float64 `json:"sample_percent"`
	// StickyKey ("header:X-User-Id", "cookie:session", "query:user") makes
	// sampling sticky per user: a user's requests are all in or all out, and
	// raising the percentage only adds users. Empty: random sampling.
	StickyKey string `json:"sticky_key,omitempty"`
	// IncludePaths and ExcludePaths filter which paths are mirrored, besides
	// the methods: path.Match globs, or a prefix ending in "/**".
	IncludePaths []string `json:"include_paths,omitempty"`
	ExcludePaths []string `json:"exclude_paths,omitempty"`
	// MaxRPS caps the replays sent to the shadow per second, across all
	// shadow-runner processes together; 0 means no cap.
	MaxRPS float64 `json:"max_rps,omitempty"`
	// LivePercent is the share of live traffic served by the new version
	// (shadow_url), sticky by StickyKey, once the launch is promoting; 100
	// when promoted. A rollback sets it back to 0.
	LivePercent float64  `json:"live_percent"`
	Methods     []string `json:"methods"`

	// Ramp, when set, lets the reporter's controller step SamplePercent up
	// (and promote) on evidence judged by Gates; RampStep is the index of the
	// current step (of Ramp.LiveSteps while promoting), started at
	// StepStartedAt. See ramp.go.
	Ramp          *Ramp     `json:"ramp,omitempty"`
	Gates         Gates     `json:"gates"`
	RampStep      int       `json:"ramp_step"`
	StepStartedAt time.Time `json:"step_started_at"`

	// Capture is the launch's capture policy: headers the tap drops or
	// replaces before capturing a request (capture.go).
	Capture Capture `json:"capture,omitzero"`

	// Compare holds the launch's comparison rules (docs/compare.md).
	Compare   compare.Rules `json:"compare"`
	Status    Status        `json:"status"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	// Revision is the KV revision the launch was read at; it is not stored.
	Revision uint64 `json:"revision"`
}

// Mirrored reports whether a tap should sample traffic for this launch.
func (l *Launch) Mirrored() bool { return l.Status == StatusActive && l.SamplePercent > 0 }

// Live reports whether taps should route a share of live traffic (the
// requests whose user falls within LivePercent) to the new version.
func (l *Launch) Live() bool {
	return (l.Status == StatusPromoting || l.Status == StatusPromoted) && l.LivePercent > 0
}

// AllowsMethod reports whether requests with this method may be mirrored.
func (l *Launch) AllowsMethod(m string) bool { return slices.Contains(l.Methods, m) }

var serviceName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Normalize fills defaults and validates a launch, returning an error that
// wraps ErrInvalid and names the field.
func (l *Launch) Normalize() error {
	if err := l.checkCaps(); err != nil {
		return err
	}
	l.Name = strings.TrimSpace(l.Name)
	if l.Name == "" {
		return fmt.Errorf("%w: name is required", ErrInvalid)
	}
	if l.Service == "" {
		l.Service = DefaultService
	}
	if !serviceName.MatchString(l.Service) {
		return fmt.Errorf("%w: service %q must be 1-64 letters, digits, '-' or '_'", ErrInvalid, l.Service)
	}
	if err := validateURL("shadow_url", l.ShadowURL); err != nil {
		return err
	}
	if l.SecondaryURL != "" {
		if err := validateURL("secondary_url", l.SecondaryURL); err != nil {
			return err
		}
	}
	if _, err := ParseStickyKey(l.StickyKey); err != nil {
		return err
	}
	if err := validatePathPatterns("include_paths", l.IncludePaths); err != nil {
		return err
	}
	if err := validatePathPatterns("exclude_paths", l.ExcludePaths); err != nil {
		return err
	}
	if l.MaxRPS < 0 || l.MaxRPS != l.MaxRPS || l.MaxRPS > 1e7 {
		return fmt.Errorf("%w: max_rps %v must be between 0 (no cap) and 10000000", ErrInvalid, l.MaxRPS)
	}
	if err := l.Capture.normalize(); err != nil {
		return err
	}
	if err := l.normalizeRamp(); err != nil {
		return err
	}
	if err := l.Compare.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if l.SamplePercent < 0 || l.SamplePercent > 100 || l.SamplePercent != l.SamplePercent {
		return fmt.Errorf("%w: sample_percent %v must be between 0 and 100", ErrInvalid, l.SamplePercent)
	}
	if len(l.Methods) == 0 {
		l.Methods = slices.Clone(DefaultMethods)
	}
	seen := map[string]bool{}
	methods := l.Methods[:0]
	for _, m := range l.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if !slices.Contains(KnownMethods, m) {
			return fmt.Errorf("%w: method %q is not one of %s", ErrInvalid, m, strings.Join(KnownMethods, ", "))
		}
		if !seen[m] {
			seen[m] = true
			methods = append(methods, m)
		}
	}
	l.Methods = methods
	return nil
}

func validateURL(field, raw string) error {
	if raw == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %s %q does not parse: %v", ErrInvalid, field, raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: %s %q must be an absolute http:// or https:// URL", ErrInvalid, field, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: %s %q must not carry a query or fragment", ErrInvalid, field, raw)
	}
	return checkTarget(field, raw, nil)
}

// CheckTargets checks shadow_url and secondary_url against a target
// allow-list (the reporter's REPORTER_ALLOWED_TARGETS): an error wraps
// ErrInvalid and names the field. Normalize already refuses link-local and
// cloud metadata targets, with or without an allow-list.
func (l *Launch) CheckTargets(p *netpolicy.Policy) error {
	if err := checkTarget("shadow_url", l.ShadowURL, p); err != nil {
		return err
	}
	if l.SecondaryURL == "" {
		return nil
	}
	return checkTarget("secondary_url", l.SecondaryURL, p)
}

func checkTarget(field, raw string, p *netpolicy.Policy) error {
	if err := p.CheckURL(raw); err != nil {
		return fmt.Errorf("%w: %s %q: %w", ErrInvalid, field, raw, err)
	}
	return nil
}
