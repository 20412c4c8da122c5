package config_test

import (
	"errors"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/config"
)

// CLICKHOUSE_CLUSTER is written into ON CLUSTER clauses: only a plain
// identifier passes.
func TestClickHouseCluster(t *testing.T) {
	for cluster, ok := range map[string]bool{"": true, "darklaunch": true, "prod_2": true, "2prod": false, "a-b": false, "c; DROP": false} {
		err := config.ClickHouse{ClickHouseCluster: cluster}.Validate()
		if ok != (err == nil) || (err != nil && !errors.Is(err, config.ErrSettings)) {
			t.Errorf("CLICKHOUSE_CLUSTER %q: %v", cluster, err)
		}
	}
}
