// Command shadow-runner replays sampled requests against shadow services and
// publishes the answers for comparison. Settings come from the environment;
// run with -h for the list.
package main

import (
	"os"

	"github.com/darklaunch/darklaunch/pkg/service"
	runner "github.com/darklaunch/darklaunch/services/shadow-runner"
)

func main() { os.Exit(service.Main("shadow-runner", runner.DefaultConfig(), runner.New)) }
