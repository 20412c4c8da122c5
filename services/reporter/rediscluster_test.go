package reporter_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// TestReportCacheOnRedisCluster: two reporters share their report cache
// through a real three-master Redis Cluster, one given a seed list
// (REDIS_ADDRS), the other one seed (REDIS_CLUSTER): a report one of them
// computed is served by the other from Redis, without a ClickHouse query.
func TestReportCacheOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	e := startEnv(t, envOptions{cacheTTL: time.Minute})
	nodes := testenv.StartRedisCluster(t, 3)

	cfgA := e.cfg
	cfgA.ID, cfgA.RedisURL, cfgA.RedisAddrs = "reporter-a", "redis://"+nodes[0]+"/0", strings.Join(nodes[1:], ",")
	a := e.run(cfgA)
	ready := func(admin string) {
		t.Helper()
		testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
			if code, rep := testenv.Health(t, admin); code != http.StatusOK {
				return fmt.Errorf("reporter at %s: %+v", admin, rep)
			}
			return nil
		})
	}
	ready(a.AdminAddr())
	l := e.create("cluster-cache", 10)
	ctx := testenv.Context(t)
	if err := analytics.Insert(ctx, e.ch, testDB, shapedRows(l.ID, time.Now().Add(-5*time.Minute), 300, 2, 1)); err != nil {
		t.Fatal(err)
	}
	var first api.Report
	if res := e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &first); res.Header.Get("X-Darklaunch-Cache") != "miss" || first.Totals.Compared != 300 {
		t.Fatalf("reporter a: %s, %+v", res.Header.Get("X-Darklaunch-Cache"), first.Totals)
	}

	cfgB := cfgA
	cfgB.ID, cfgB.RedisURL, cfgB.RedisAddrs, cfgB.RedisCluster = "reporter-b", "redis://"+nodes[2], "", true
	b := e.run(cfgB) // e now sends its requests to b
	ready(b.AdminAddr())
	var second api.Report
	res := e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &second)
	if res.Header.Get("X-Darklaunch-Cache") != "hit" || second.Totals != first.Totals || b.ReportQueries() != 0 || a.ReportQueries() != 1 {
		t.Fatalf("reporter b: %s, %+v, queries a %d b %d: want a hit from Redis, no query of its own",
			res.Header.Get("X-Darklaunch-Cache"), second.Totals, a.ReportQueries(), b.ReportQueries())
	}
	// The value lives on the master that owns its slot.
	var keys int64
	for _, addr := range nodes {
		node := redis.NewClient(&redis.Options{Addr: addr})
		n, err := node.DBSize(ctx).Result()
		node.Close()
		if err != nil {
			t.Fatal(err)
		}
		keys += n
	}
	if keys == 0 {
		t.Fatal("no key in the Redis Cluster")
	}
}
