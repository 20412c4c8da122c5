package api

import (
	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// CreateRequest is the body of POST /v1/launches. Zero fields are left out
// when encoded, which the API reads as their defaults.
type CreateRequest struct {
	Name         string `json:"name"`
	Service      string `json:"service,omitempty"`
	ShadowURL    string `json:"shadow_url"`
	SecondaryURL string `json:"secondary_url,omitempty"`
	// SamplePercent defaults to 0, or to the ramp's first step (a ramped
	// launch starts there: another value is refused).
	SamplePercent *float64 `json:"sample_percent,omitempty"`
	Methods       []string `json:"methods,omitempty"`
	// Compare are the launch's comparison rules (docs/compare.md).
	Compare      compare.Rules `json:"compare,omitzero"`
	StickyKey    string        `json:"sticky_key,omitempty"`
	IncludePaths []string      `json:"include_paths,omitempty"`
	ExcludePaths []string      `json:"exclude_paths,omitempty"`
	MaxRPS       float64       `json:"max_rps,omitempty"`
	Ramp         *launch.Ramp  `json:"ramp,omitempty"`
	Gates        launch.Gates  `json:"gates,omitzero"`
	// Capture is the launch's capture policy (headers dropped or replaced
	// before capture; replacement values are secrets).
	Capture launch.Capture `json:"capture,omitzero"`
	// Reason is recorded in the audit log.
	Reason string `json:"reason,omitempty"`
}

// Launch is the launch the request describes, before launch.Launch.Begin
// sets where it starts and the store validates it.
func (r *CreateRequest) Launch() launch.Launch {
	return launch.Launch{
		Name: r.Name, Service: r.Service, ShadowURL: r.ShadowURL, SecondaryURL: r.SecondaryURL,
		Methods: r.Methods, Compare: r.Compare, StickyKey: r.StickyKey,
		IncludePaths: r.IncludePaths, ExcludePaths: r.ExcludePaths, MaxRPS: r.MaxRPS, Ramp: r.Ramp, Gates: r.Gates,
		Capture: r.Capture,
	}
}

// PatchRequest is the body of PATCH /v1/launches/{id}: the fields to
// change (absent or null ones are left as they are; see launch.Patch) and
// a reason.
type PatchRequest struct {
	launch.Patch
	// Reason is recorded in the audit log; it changes nothing.
	Reason string `json:"reason,omitempty"`
}

// ActionRequest is the optional body of the pause, resume and rollback
// actions.
type ActionRequest struct {
	Reason string `json:"reason"`
}

// PromoteRequest is the optional body of POST /v1/launches/{id}/promote.
type PromoteRequest struct {
	Reason string `json:"reason,omitempty"`
	// LiveSteps step live traffic to the new version (they replace
	// ramp.live_steps); absent (nil): the ramp's live steps, or 100% at
	// once; [] (empty, not nil): 100% at once.
	LiveSteps []launch.Step `json:"live_steps,omitzero"`
}

// Validate refuses a reason over launch.MaxReasonLen (the API answers 422);
// the launch itself is validated by the store.
func (r *CreateRequest) Validate() error { return launch.CheckReason(r.Reason) }

// Validate refuses a reason over launch.MaxReasonLen; the patched launch
// is validated by launch.Launch.ApplyPatch.
func (r *PatchRequest) Validate() error { return launch.CheckReason(r.Reason) }

// Validate refuses a reason over launch.MaxReasonLen.
func (r *ActionRequest) Validate() error { return launch.CheckReason(r.Reason) }

// Validate refuses a reason over launch.MaxReasonLen; the live steps are
// validated by launch.Launch.Promote.
func (r *PromoteRequest) Validate() error { return launch.CheckReason(r.Reason) }
