package testenv_test

import (
	"testing"

	"github.com/darklaunch/darklaunch/pkg/testenv"
)

func TestStartDNS(t *testing.T) {
	r := testenv.StartDNS(t, map[string]string{"shadow.rebind.test": "169.254.169.254"})
	ips, err := r.LookupHost(testenv.Context(t), "shadow.rebind.test")
	if err != nil || len(ips) != 1 || ips[0] != "169.254.169.254" {
		t.Fatalf("lookup = %v, %v", ips, err)
	}
	if _, err := r.LookupHost(testenv.Context(t), "unknown.rebind.test"); err == nil {
		t.Fatal("unknown name resolved")
	}
}
