// Command reporter serves the darklaunch API, reports and dashboard.
// Settings come from the environment; -h prints them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

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
