package reporter

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// redisConfig is a valid reporter Config with the given Redis settings.
func redisConfig(t *testing.T, url, addrs, master string, cluster bool) Config {
	t.Helper()
	cfg := Config{Auth: authOff}
	if err := config.Defaults(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.RedisURL, cfg.RedisAddrs, cfg.RedisMasterName, cfg.RedisCluster = url, addrs, master, cluster
	return cfg
}

// The settings pick the topology; contradictory ones are refused by
// Validate with the variable's name.
func TestRedisOptions(t *testing.T) {
	for _, c := range []struct {
		name, url, addrs, master string
		cluster                  bool
		wantAddrs                []string
		wantCluster              bool
	}{
		{"one server", "redis://:pw@h1:6379/2", "", "", false, []string{"h1:6379"}, false},
		{"cluster from a list", "redis://h1:6379/0", "h2:6379, h3:6380,", "", false, []string{"h1:6379", "h2:6379", "h3:6380"}, true},
		{"cluster from one seed", "rediss://h1:6379", "", "", true, []string{"h1:6379"}, true},
		{"sentinel", "redis://:pw@s1:26379/1", "s2:26379", "mymaster", false, []string{"s1:26379", "s2:26379"}, false},
	} {
		cfg := redisConfig(t, c.url, c.addrs, c.master, c.cluster)
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		o, err := redisOptions(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(o.Addrs) != fmt.Sprint(c.wantAddrs) || o.IsClusterMode != c.wantCluster || o.MasterName != c.master {
			t.Errorf("%s: addrs %v cluster %v master %q", c.name, o.Addrs, o.IsClusterMode, o.MasterName)
		}
		if o.MaxRetries != -1 || o.ReadTimeout != 500*time.Millisecond || (strings.HasPrefix(c.url, "rediss") != (o.TLSConfig != nil)) {
			t.Errorf("%s: retries %d, read timeout %s, TLS %v", c.name, o.MaxRetries, o.ReadTimeout, o.TLSConfig != nil)
		}
	}
	if o, _ := redisOptions(redisConfig(t, "redis://:pw@s1:26379/1", "", "m", false)); o.Password != "pw" || o.DB != 1 || o.SentinelPassword != "" {
		t.Errorf("sentinel credentials: %+v", o)
	}
	for _, c := range []struct{ url, addrs, master, want string }{
		{"http://h:1", "", "", "REDIS_URL"},
		{"redis://h:1/0", "h2", "", "REDIS_ADDRS"},
		{"redis://h:1/3", "h2:1", "", "database 3"},
		{"redis://h:1/0", "", "m", "REDIS_CLUSTER"},
	} {
		cfg := redisConfig(t, c.url, c.addrs, c.master, c.want == "REDIS_CLUSTER")
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("url %s addrs %q: Validate() = %v, want an error naming %s", c.url, c.addrs, err, c.want)
		}
	}
}

// roundTrip writes n keys through the client and reads them back.
func roundTrip(t *testing.T, rdb redis.UniversalClient, n int) {
	t.Helper()
	ctx := testenv.Context(t)
	for i := range n {
		key := fmt.Sprintf("%s%d", cacheKeyPrefix, i)
		if err := rdb.Set(ctx, key, fmt.Sprint(i), time.Minute).Err(); err != nil {
			t.Fatalf("set %s: %v", key, err)
		}
	}
	for i := range n {
		key := fmt.Sprintf("%s%d", cacheKeyPrefix, i)
		if v, err := rdb.Get(ctx, key).Result(); err != nil || v != fmt.Sprint(i) {
			t.Fatalf("get %s = %q, %v", key, v, err)
		}
	}
}

// One real redis-server, over TCP and over TLS with a client certificate.
func TestRedisSingle(t *testing.T) {
	cfg := redisConfig(t, testenv.StartRedis(t), "", "", false)
	rdb, err := newRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if _, ok := rdb.(*redis.Client); !ok {
		t.Fatalf("one URL gave a %T, want *redis.Client", rdb)
	}
	roundTrip(t, rdb, 20)

	files := testenv.NewTLSFiles(t)
	cfg = redisConfig(t, testenv.StartRedisTLS(t, files), "", "", false)
	cfg.RedisCAFile, cfg.RedisCertFile, cfg.RedisKeyFile = files.CA, files.ClientCert, files.ClientKey
	rdb, err = newRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	roundTrip(t, rdb, 5)
	cfg.RedisCAFile = ""
	bad, err := newRedis(cfg) // the system's CAs do not know the test CA
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(testenv.Context(t)).Err(); err == nil {
		t.Fatal("TLS to a server whose CA the client does not trust succeeded")
	}
}

// A real three-master Redis Cluster: the keys spread over the masters,
// from one seed address (REDIS_CLUSTER) or a list (REDIS_ADDRS).
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	nodes := testenv.StartRedisCluster(t, 3)
	for name, cfg := range map[string]Config{
		"seed list": redisConfig(t, "redis://"+nodes[0]+"/0", strings.Join(nodes[1:], ","), "", false),
		"one seed":  redisConfig(t, "redis://"+nodes[1], "", "", true),
	} {
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		rdb, err := newRedis(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rdb.(*redis.ClusterClient); !ok {
			t.Fatalf("%s: got a %T, want *redis.ClusterClient", name, rdb)
		}
		roundTrip(t, rdb, 200)
		rdb.Close()
	}
	// Each master holds a share of the keys.
	for _, addr := range nodes {
		node := redis.NewClient(&redis.Options{Addr: addr})
		n, err := node.DBSize(testenv.Context(t)).Result()
		node.Close()
		if err != nil || n == 0 || n == 200 {
			t.Errorf("master %s holds %d of the 200 keys (%v): not a share", addr, n, err)
		}
	}
}

// Sentinel: the client asks the sentinel for the master and uses it.
func TestRedisSentinel(t *testing.T) {
	master := testenv.NewRedis(t)
	master.Start()
	sentinel := testenv.StartRedisSentinel(t, "dl", master.Addr())
	rdb, err := newRedis(redisConfig(t, "redis://"+sentinel+"/0", "", "dl", false))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	roundTrip(t, rdb, 20)
	direct := redis.NewClient(&redis.Options{Addr: master.Addr()})
	defer direct.Close()
	if v, err := direct.Get(context.Background(), cacheKeyPrefix+"7").Result(); err != nil || v != "7" {
		t.Fatalf("the master does not hold what was written through the sentinel: %q, %v", v, err)
	}
}
