// Command mirror is darklaunch's tap: a reverse proxy to MIRROR_PRIMARY_URL
// that publishes a sample of the traffic to NATS JetStream. Run it with -h
// for its settings. Its Go runtime settings (GOGC, GOMEMLIMIT) come from
// MIRROR_GOGC and MIRROR_MEMORY_LIMIT (mirror.NewProcess).
package main

import (
	"os"

	"github.com/darklaunch/darklaunch/pkg/service"
	"github.com/darklaunch/darklaunch/services/mirror"
)

func main() { os.Exit(service.Main("mirror", mirror.Config{}, mirror.NewProcess)) }
