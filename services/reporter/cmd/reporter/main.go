// Command reporter serves the darklaunch API, reports and dashboard.
// Settings come from the environment; -h prints them.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/darklaunch/darklaunch/pkg/service"
	"github.com/darklaunch/darklaunch/services/reporter"
)

func main() {
	os.Exit(service.Main("reporter", reporter.Config{}, func(cfg reporter.Config, log *slog.Logger) (*reporter.Service, error) {
		// go-redis logs every failed dial on its own; the reporter already
		// logs cache failures (rate-limited) and counts them, so keep its
		// lines at debug level in the service's log.
		redis.SetLogger(redisLogger{log.With("component", "go-redis")})
		return reporter.New(cfg, log)
	}))
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
