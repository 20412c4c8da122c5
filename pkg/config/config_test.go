package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

type spec struct {
	NATS
	Logging
	Addr string `envconfig:"SVC_ADDR" default:":1234" desc:"where to listen"`
}

func TestLoadAndUsage(t *testing.T) {
	var out bytes.Buffer
	var s spec
	help, err := Load("svc", &s, []string{"-h"}, &out)
	if !help || err != nil {
		t.Fatalf("help=%v err=%v", help, err)
	}
	for _, want := range []string{"SVC_ADDR", ":1234", "where to listen", "NATS_URL", "LOG_LEVEL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
	t.Setenv("SVC_ADDR", ":9")
	if help, err := Load("svc", &s, nil, &out); help || err != nil || s.Addr != ":9" || s.NATSURL == "" {
		t.Fatalf("load: %+v %v %v", s, help, err)
	}
	keys, _ := Keys(&s)
	if strings.Join(keys, ",") != "NATS_URL,NATS_CREDS_FILE,NATS_NKEY_FILE,NATS_CA_FILE,NATS_CERT_FILE,NATS_KEY_FILE,NATS_REPLICAS,NATS_STREAM_MAX_BYTES,NATS_STREAM_MAX_AGE,LOG_LEVEL,LOG_FORMAT,SVC_ADDR" {
		t.Fatalf("keys %v", keys)
	}
}

func TestProfilingSetting(t *testing.T) {
	for v, ok := range map[string]bool{"on": true, "off": true, "yes": false, "": false} {
		err := Profiling{Pprof: v}.Validate()
		if (err == nil) != ok || err != nil && !errors.Is(err, ErrSettings) {
			t.Errorf("PPROF=%q: %v, want ok=%v", v, err, ok)
		}
	}
	if !Default[Profiling]().Profiles() {
		t.Error("profiles are off by default, want on")
	}
}

func TestStreamLimitSettings(t *testing.T) {
	ok := Default[NATS]()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if ok.NATSStreamMaxBytes != 10<<30 || ok.NATSStreamMaxAge != 24*time.Hour {
		t.Errorf("defaults %d, %s; want 10 GiB and 24h", ok.NATSStreamMaxBytes, ok.NATSStreamMaxAge)
	}
	for _, bad := range []func(*NATS){
		func(n *NATS) { n.NATSStreamMaxBytes = 1<<20 - 1 },
		func(n *NATS) { n.NATSStreamMaxAge = 0 },
		func(n *NATS) { n.NATSStreamMaxAge = -time.Second },
	} {
		n := ok
		bad(&n)
		if err := n.Validate(); !errors.Is(err, ErrSettings) {
			t.Errorf("%d bytes, %s: %v, want ErrSettings", n.NATSStreamMaxBytes, n.NATSStreamMaxAge, err)
		}
	}
}
