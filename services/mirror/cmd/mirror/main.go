// Command mirror is darklaunch's tap: a reverse proxy to MIRROR_PRIMARY_URL
// that publishes a sample of the traffic to NATS JetStream. Run it with -h
// for its settings.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/services/mirror"
)

func main() { os.Exit(run()) }

func run() int {
	var cfg mirror.Config
	help, err := config.Load("mirror", &cfg, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if help {
		return 0
	}
	log := cfg.Logger("mirror")
	svc, err := mirror.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := svc.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}
