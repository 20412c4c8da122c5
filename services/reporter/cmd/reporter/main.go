// Command reporter serves the darklaunch API, reports and dashboard.
// Settings come from the environment; -h prints them.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/services/reporter"
)

func main() { os.Exit(run()) }

func run() int {
	var cfg reporter.Config
	help, err := config.Load("reporter", &cfg, os.Args[1:], os.Stdout)
	if help {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := cfg.Logging.Logger("reporter")
	// go-redis logs every failed dial on its own; the reporter already logs
	// cache failures (rate-limited) and counts them, so keep its lines at
	// debug level in the service's log.
	redis.SetLogger(redisLogger{log.With("component", "go-redis")})
	svc, err := reporter.New(cfg, log)
	if err != nil {
		log.Error("start reporter", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := svc.Run(ctx); err != nil {
		log.Error("reporter stopped", "err", err)
		return 1
	}
	return 0
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
