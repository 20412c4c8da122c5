package netpolicy

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestAlwaysRefused(t *testing.T) {
	var none *Policy
	open, err := Parse("")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://169.254.0.1:8080",
		"http://[fe80::1]/",
		"http://[fe80::1%25eth0]/",
		"http://[fd00:ec2::254]/",
		"http://100.100.100.200/",
		"http://168.63.129.16/",
		"http://[::ffff:169.254.169.254]/",
		"http://[::ffff:a9fe:a9fe]/",
		"http://[::169.254.169.254]/",
		"http://[64:ff9b::169.254.169.254]/",
		"http://[2002:a9fe:a9fe::]/",
		"http://2852039166/",
		"http://0xa9fea9fe/",
		"http://0251.0376.0251.0376/",
		"http://169.254.43518/",
		"http://metadata.google.internal/computeMetadata/v1/",
		"http://METADATA.GOOGLE.INTERNAL./",
		"http://metadata.goog/",
	} {
		for _, p := range []*Policy{none, open} {
			if err := p.CheckURL(u); !errors.Is(err, ErrRefused) {
				t.Errorf("CheckURL(%s) = %v, want ErrRefused", u, err)
			}
		}
	}
	for _, u := range []string{"http://127.0.0.1:9102", "http://[::1]/", "https://shadow.internal/", "http://10.0.0.7", "http://169.253.1.1"} {
		if err := none.CheckURL(u); err != nil {
			t.Errorf("CheckURL(%s) = %v, want nil", u, err)
		}
	}
}

func TestAllowList(t *testing.T) {
	p, err := Parse(" shadow.example.com, *.svc.cluster.local ,10.0.0.0/8, 127.0.0.1, ::1")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Restricted() {
		t.Fatal("not restricted")
	}
	for _, u := range []string{"http://shadow.example.com", "http://SHADOW.example.com.:80/x", "http://a.svc.cluster.local",
		"http://a.b.svc.cluster.local", "http://10.1.2.3:8080", "http://127.0.0.1:1", "http://[::1]:9/", "http://[::ffff:10.0.0.1]/"} {
		if err := p.CheckURL(u); err != nil {
			t.Errorf("CheckURL(%s) = %v, want allowed", u, err)
		}
	}
	for _, u := range []string{"http://other.example.com", "http://svc.cluster.local", "http://evilsvc.cluster.local",
		"http://11.0.0.1", "http://127.0.0.2", "http://169.254.169.254", "http://metadata.google.internal", "http://167772161/"} {
		err := p.CheckURL(u)
		if u == "http://167772161/" { // 10.0.0.1 in decimal: inside 10.0.0.0/8
			if err != nil {
				t.Errorf("CheckURL(%s) = %v, want allowed", u, err)
			}
			continue
		}
		if !errors.Is(err, ErrRefused) {
			t.Errorf("CheckURL(%s) = %v, want ErrRefused", u, err)
		}
	}
	// An allow-list cannot open the always-refused ranges.
	wide, _ := Parse("0.0.0.0/0,::/0,metadata.google.internal")
	for _, u := range []string{"http://169.254.169.254", "http://[fe80::2]", "http://metadata.google.internal"} {
		if err := wide.CheckURL(u); !errors.Is(err, ErrRefused) {
			t.Errorf("wide allow-list: CheckURL(%s) = %v, want ErrRefused", u, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{"http://x", "a b", "*.", "10.0.0.0/33", "*"} {
		if _, err := Parse(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestControl(t *testing.T) {
	for _, a := range []string{"169.254.169.254:80", "[fe80::1%eth0]:80", "[::ffff:169.254.1.1]:443", "[fd00:ec2::254]:80"} {
		if err := Control("tcp", a, nil); !errors.Is(err, ErrRefused) {
			t.Errorf("Control(%s) = %v, want ErrRefused", a, err)
		}
	}
	for _, a := range []string{"127.0.0.1:80", "[::1]:80", "10.0.0.1:8080"} {
		if err := Control("tcp", a, nil); err != nil {
			t.Errorf("Control(%s) = %v", a, err)
		}
	}
	// A real dialer stops before connecting.
	d := net.Dialer{Control: Control}
	if _, err := d.Dial("tcp", "169.254.169.254:80"); !errors.Is(err, ErrRefused) {
		t.Errorf("dial = %v, want ErrRefused", err)
	}
}

func TestRefusedEmbedded(t *testing.T) {
	for _, s := range []string{"::", "::1", "::ffff:127.0.0.1", "2001:db8::1"} {
		if Refused(netip.MustParseAddr(s)) {
			t.Errorf("Refused(%s) = true", s)
		}
	}
}
