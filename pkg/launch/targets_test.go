package launch

import (
	"errors"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/netpolicy"
)

func TestNormalizeRefusesMetadataTargets(t *testing.T) {
	for _, l := range []Launch{
		{Name: "x", ShadowURL: "http://169.254.169.254/latest"},
		{Name: "x", ShadowURL: "http://metadata.google.internal"},
		{Name: "x", ShadowURL: "http://s", SecondaryURL: "http://[fd00:ec2::254]"},
		{Name: "x", ShadowURL: "http://[::ffff:169.254.169.254]:80"},
	} {
		err := l.Normalize()
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, netpolicy.ErrRefused) {
			t.Errorf("%s / %s: %v, want ErrInvalid and ErrRefused", l.ShadowURL, l.SecondaryURL, err)
		}
	}
}

func TestCheckTargets(t *testing.T) {
	p, err := netpolicy.Parse("*.shadows.internal,10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	ok := Launch{ShadowURL: "http://v2.shadows.internal:8080", SecondaryURL: "http://10.1.1.1"}
	if err := ok.CheckTargets(p); err != nil {
		t.Fatal(err)
	}
	if err := ok.CheckTargets(nil); err != nil {
		t.Fatal(err)
	}
	for field, l := range map[string]Launch{
		"shadow_url":    {ShadowURL: "http://evil.example.com"},
		"secondary_url": {ShadowURL: "http://v2.shadows.internal", SecondaryURL: "http://192.168.1.1"},
	} {
		err := l.CheckTargets(p)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v, want ErrInvalid naming the field", field, err)
		}
	}
}
