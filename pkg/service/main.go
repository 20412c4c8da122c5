// Package service is the common main of darklaunch's services: settings,
// logger, construction, and a run that ends on SIGINT or SIGTERM.
package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/darklaunch/darklaunch/pkg/config"
)

// Runner is a constructed service. Run blocks until ctx is cancelled, then
// shuts down gracefully (stop taking work, flush, ack) and returns.
type Runner interface {
	Run(ctx context.Context) error
}

// Settings is a service's configuration struct: it embeds config.Logging.
type Settings interface {
	Logger(service string) *slog.Logger
}

// Main loads cfg from the environment (printing the settings table for -h),
// builds the service with newService and runs it until SIGINT or SIGTERM.
// It returns the process exit code: 0 after a clean stop or -h, 1 when the
// service failed, 2 for bad settings.
func Main[C Settings, S Runner](name string, cfg C, newService func(C, *slog.Logger) (S, error)) int {
	return run(name, cfg, newService, os.Args[1:], os.Stdout, os.Stderr, nil)
}

func run[C Settings, S Runner](name string, cfg C, newService func(C, *slog.Logger) (S, error),
	args []string, stdout, stderr io.Writer, ctx context.Context) int {
	help, err := config.Load(name, &cfg, args, stdout)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if help {
		return 0
	}
	log := cfg.Logger(name)
	svc, err := newService(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	if err := svc.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
