// Command demo-app serves the demo primary, secondary or shadow (see
// package demo).
//
//	DEMO_ADDR=:9101 DEMO_VARIANT=primary demo-app
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/darklaunch/darklaunch/deploy/demo"
)

func main() {
	for _, a := range os.Args[1:] {
		if a == "-h" || a == "--help" {
			fmt.Println("demo-app: settings are read from the environment\n\nDEMO_ADDR     listen address (default :9101)\nDEMO_VARIANT  primary, secondary or shadow (default primary)")
			return
		}
	}
	addr := envOr("DEMO_ADDR", ":9101")
	variant := envOr("DEMO_VARIANT", demo.Primary)
	h, err := demo.Handler(variant, demo.Options{})
	if err != nil {
		slog.Error("demo-app", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("demo-app listening", "addr", addr, "variant", variant)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		slog.Error("demo-app", "err", err)
		os.Exit(1)
	}
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
