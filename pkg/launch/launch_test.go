package launch

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/compare"
)

func TestNormalize(t *testing.T) {
	ok := Launch{Name: " checkout v2 ", ShadowURL: "http://shadow:8080/base", SamplePercent: 10, Methods: []string{"get", "POST", "GET"}}
	if err := ok.Normalize(); err != nil {
		t.Fatal(err)
	}
	if ok.Name != "checkout v2" || ok.Service != DefaultService || len(ok.Methods) != 2 || ok.Methods[0] != "GET" {
		t.Fatalf("normalized to %+v", ok)
	}
	def := Launch{Name: "x", ShadowURL: "https://s"}
	if err := def.Normalize(); err != nil || len(def.Methods) != 3 {
		t.Fatalf("default methods: %v %v", def.Methods, err)
	}
	for name, l := range map[string]Launch{
		"no name":        {ShadowURL: "http://s"},
		"percent 150":    {Name: "x", ShadowURL: "http://s", SamplePercent: 150},
		"percent -1":     {Name: "x", ShadowURL: "http://s", SamplePercent: -1},
		"relative url":   {Name: "x", ShadowURL: "/foo"},
		"ftp url":        {Name: "x", ShadowURL: "ftp://s"},
		"no host":        {Name: "x", ShadowURL: "http://"},
		"query in url":   {Name: "x", ShadowURL: "http://s/?a=1"},
		"unknown method": {Name: "x", ShadowURL: "http://s", Methods: []string{"FETCH"}},
		"bad service":    {Name: "x", ShadowURL: "http://s", Service: "a b"},
		"no url":         {Name: "x"},
		"bad secondary":  {Name: "x", ShadowURL: "http://s", SecondaryURL: "/rel"},
		"bad rule":       {Name: "x", ShadowURL: "http://s", Compare: compare.Rules{IgnorePaths: []string{"$.a["}}},
	} {
		if err := l.Normalize(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestNormalizeRules(t *testing.T) {
	l := Launch{Name: "x", ShadowURL: "http://s", SecondaryURL: "http://primary-2:8080",
		Compare: compare.Rules{IgnorePaths: []string{"$..updated_at"}, ArrayKeys: map[string]string{"$.items": "id"}}}
	if err := l.Normalize(); err != nil {
		t.Fatal(err)
	}
	bad := Launch{Name: "x", ShadowURL: "http://s", Compare: compare.Rules{IgnorePaths: []string{"$.ok", "nope"}}}
	err := bad.Normalize()
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, compare.ErrInvalidRules) || !strings.Contains(err.Error(), "ignore_paths[1]") {
		t.Fatalf("bad rule: %v; want ErrInvalid and ErrInvalidRules naming ignore_paths[1]", err)
	}
}

// The header opt-ins of a launch's compare rules are off unless set, and
// survive the store's JSON.
func TestCompareOptIns(t *testing.T) {
	var l Launch
	if err := json.Unmarshal([]byte(`{"name":"x","shadow_url":"http://s","compare":{}}`), &l); err != nil || l.Compare.ContentTypeParams || l.Compare.SecurityHeaders {
		t.Fatalf("defaults: %+v %v", l.Compare, err)
	}
	l.Compare = compare.Rules{ContentTypeParams: true, SecurityHeaders: true}
	if err := l.Normalize(); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(l)
	var back Launch
	if err := json.Unmarshal(data, &back); err != nil || !back.Compare.ContentTypeParams || !back.Compare.SecurityHeaders ||
		!strings.Contains(string(data), `"compare":{"content_type_params":true,"security_headers":true}`) {
		t.Fatalf("round trip %s: %+v %v", data, back.Compare, err)
	}
	if err := json.Unmarshal([]byte(`{"compare":{"security_headers":"yes"}}`), &back); err == nil {
		t.Fatal("a non-boolean opt-in decodes")
	}
}
