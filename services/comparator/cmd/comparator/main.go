// Command comparator compares each shadow response with the primary's and
// stores one row per pair in ClickHouse. Settings come from the
// environment; run with -h for the list.
package main

import (
	"os"

	"github.com/darklaunch/darklaunch/pkg/service"
	"github.com/darklaunch/darklaunch/services/comparator"
)

func main() { os.Exit(service.Main("comparator", comparator.DefaultConfig(), comparator.New)) }
