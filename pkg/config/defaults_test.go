package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type nested struct {
	Interval time.Duration `envconfig:"N_INTERVAL" default:"2s"`
}

type allKinds struct {
	Logging
	Sub     nested
	Name    string   `envconfig:"K_NAME" default:"svc"`
	On      bool     `envconfig:"K_ON" default:"true"`
	Size    int      `envconfig:"K_SIZE" default:"1048576"`
	Bytes   int64    `envconfig:"K_BYTES" default:"268435456"`
	Ratio   float64  `envconfig:"K_RATIO" default:"0.5"`
	Count   uint32   `envconfig:"K_COUNT" default:"7"`
	Paths   []string `envconfig:"K_PATHS" default:"/a,/b"`
	Set     string   `envconfig:"K_SET" default:"from tag"`
	NoTag   int
	private int `default:"3"`
}

func TestDefaultsFillsZeroFieldsFromTags(t *testing.T) {
	s := allKinds{Set: "kept"}
	if err := Defaults(&s); err != nil {
		t.Fatal(err)
	}
	want := allKinds{Logging: Logging{LogLevel: "info", LogFormat: "text"}, Sub: nested{Interval: 2 * time.Second},
		Name: "svc", On: true, Size: 1 << 20, Bytes: 256 << 20, Ratio: 0.5, Count: 7, Paths: []string{"/a", "/b"}, Set: "kept"}
	if got := s; got.Logging != want.Logging || got.Sub != want.Sub || got.Name != want.Name || got.On != want.On ||
		got.Size != want.Size || got.Bytes != want.Bytes || got.Ratio != want.Ratio || got.Count != want.Count ||
		strings.Join(got.Paths, ",") != "/a,/b" || got.Set != "kept" || got.NoTag != 0 || got.private != 0 {
		t.Fatalf("Defaults gave %+v, want %+v", got, want)
	}
}

// Defaults and the environment agree: a spec read from an empty
// environment equals the same spec filled by Defaults.
func TestDefaultsMatchAnEmptyEnvironment(t *testing.T) {
	var fromEnv, fromGo allKinds
	if _, err := Load("svc", &fromEnv, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := Defaults(&fromGo); err != nil {
		t.Fatal(err)
	}
	if fromEnv.Size != fromGo.Size || fromEnv.Sub != fromGo.Sub || fromEnv.Name != fromGo.Name || fromEnv.Set != fromGo.Set ||
		strings.Join(fromEnv.Paths, ",") != strings.Join(fromGo.Paths, ",") || fromEnv.Ratio != fromGo.Ratio {
		t.Fatalf("environment %+v, Defaults %+v", fromEnv, fromGo)
	}
}

func TestDefaultsRejectsABadTag(t *testing.T) {
	var s struct {
		Wait time.Duration `envconfig:"X_WAIT" default:"soon"`
	}
	err := Defaults(&s)
	if !errors.Is(err, ErrSettings) || !strings.Contains(err.Error(), "X_WAIT") {
		t.Fatalf("err = %v, want ErrSettings naming X_WAIT", err)
	}
	if err := Defaults(s); !errors.Is(err, ErrSettings) {
		t.Fatalf("a non-pointer gave %v", err)
	}
}

type validated struct {
	N int `envconfig:"V_N" default:"1"`
}

var errTooSmall = errors.New("V_N must be at least 2")

func (v *validated) Validate() error {
	if v.N < 2 {
		return errTooSmall
	}
	return nil
}

func TestLoadValidates(t *testing.T) {
	var v validated
	if _, err := Load("svc", &v, nil, nil); !errors.Is(err, errTooSmall) {
		t.Fatalf("Load gave %v, want the Validate error", err)
	}
	t.Setenv("V_N", "2")
	if _, err := Load("svc", &v, nil, nil); err != nil || v.N != 2 {
		t.Fatalf("Load gave %v, N=%d", err, v.N)
	}
}

func TestDefaultAndPrepare(t *testing.T) {
	type spec struct {
		NATS
		N int `default:"3"`
	}
	if s := Default[spec](); s.N != 3 || s.NATSURL != "nats://127.0.0.1:4222" {
		t.Errorf("Default: %+v", s)
	}
	v := &prepared{}
	if err := Prepare(v); err != nil || v.N != 2 {
		t.Errorf("Prepare: %v, %+v", err, v)
	}
	v = &prepared{N: -1}
	if err := Prepare(v); err == nil {
		t.Error("Prepare did not validate")
	}
}

type prepared struct {
	N int `default:"2"`
}

func (v *prepared) Validate() error {
	if v.N < 0 {
		return ErrSettings
	}
	return nil
}
