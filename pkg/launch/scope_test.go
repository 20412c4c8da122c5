package launch

import "testing"

func TestScopes(t *testing.T) {
	for name, want := range map[string]Scope{"read": ScopeRead, "Operate": ScopeOperate, "ADMIN": ScopeAdmin} {
		if got, err := ParseScope(name); err != nil || got != want {
			t.Errorf("ParseScope(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ParseScope("root"); err == nil {
		t.Error("ParseScope(root) succeeded")
	}
	if !ScopeAdmin.Allows(ScopeOperate) || !ScopeOperate.Allows(ScopeRead) || ScopeRead.Allows(ScopeOperate) || ScopeOperate.Allows(ScopeAdmin) {
		t.Error("scopes are not ordered read < operate < admin")
	}
	for a, want := range map[Action]Scope{ActionPause: ScopeOperate, ActionResume: ScopeOperate, ActionRollback: ScopeOperate, ActionPromote: ScopeAdmin} {
		if got := a.Scope(); got != want {
			t.Errorf("%s needs %s, want %s", a, got, want)
		}
	}
	pct, name, url := 5.0, "n", "http://x"
	for _, c := range []struct {
		p    Patch
		want Scope
	}{
		{Patch{SamplePercent: &pct}, ScopeOperate},
		{Patch{SamplePercent: &pct, Name: &name}, ScopeAdmin},
		{Patch{ShadowURL: &url}, ScopeAdmin},
		{Patch{Ramp: &Ramp{}}, ScopeAdmin},
		{Patch{Gates: &Gates{}}, ScopeAdmin},
		{Patch{SamplePercent: &pct, Capture: &Capture{}}, ScopeAdmin},
	} {
		if got := c.p.Scope(); got != c.want {
			t.Errorf("patch %+v needs %s, want %s", c.p, got, c.want)
		}
	}
}
