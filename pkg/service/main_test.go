package service

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/config"
)

type settings struct {
	config.Logging
	Addr string `envconfig:"TESTSVC_ADDR" default:":1" desc:"where"`
}

type fake struct{ err error }

func (f fake) Run(ctx context.Context) error { <-ctx.Done(); return f.err }

func TestRun(t *testing.T) {
	var out, errOut bytes.Buffer
	newOK := func(settings, *slog.Logger) (fake, error) { return fake{}, nil }
	if code := run("testsvc", settings{}, newOK, []string{"-h"}, &out, &errOut, nil); code != 0 || !strings.Contains(out.String(), "TESTSVC_ADDR") {
		t.Fatalf("-h: code %d, output %q", code, out.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if code := run("testsvc", settings{}, newOK, nil, &out, &errOut, ctx); code != 0 {
		t.Fatalf("clean stop: code %d", code)
	}
	failing := func(settings, *slog.Logger) (fake, error) { return fake{err: errors.New("boom")}, nil }
	if code := run("testsvc", settings{}, failing, nil, &out, &errOut, ctx); code != 1 {
		t.Fatalf("failed run: code %d", code)
	}
	cannot := func(settings, *slog.Logger) (fake, error) { return fake{}, errors.New("bad") }
	if code := run("testsvc", settings{}, cannot, nil, &out, &errOut, ctx); code != 1 {
		t.Fatalf("failed New: code %d", code)
	}
	t.Setenv("LOG_LEVEL", "info")
	t.Setenv("TESTSVC_ADDR", "")
	type bad struct {
		config.Logging
		N int `envconfig:"TESTSVC_N"`
	}
	t.Setenv("TESTSVC_N", "many")
	newBad := func(bad, *slog.Logger) (fake, error) { return fake{}, nil }
	if code := run("testsvc", bad{}, newBad, nil, &out, &errOut, ctx); code != 2 || !strings.Contains(errOut.String(), "TESTSVC_N") {
		t.Fatalf("bad settings: code %d, stderr %q", code, errOut.String())
	}
}
