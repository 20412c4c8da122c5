// Command comparator compares each shadow response with the primary's and
// stores one row per pair in ClickHouse. Settings come from the
// environment; run with -h for the list.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/services/comparator"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := comparator.DefaultConfig()
	help, err := config.Load("comparator", &cfg, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if help {
		return 0
	}
	log := cfg.Logger("comparator")
	svc, err := comparator.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := svc.Run(ctx); err != nil {
		log.Error("stopped with error", "err", err)
		return 1
	}
	return 0
}
