// Command shadow-runner replays sampled requests against shadow services and
// publishes the answers for comparison. Settings come from the environment;
// run with -h for the list.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/darklaunch/darklaunch/pkg/config"
	runner "github.com/darklaunch/darklaunch/services/shadow-runner"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := runner.DefaultConfig()
	help, err := config.Load("shadow-runner", &cfg, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if help {
		return 0
	}
	log := cfg.Logger("shadow-runner")
	svc, err := runner.New(cfg, log)
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
