package reporter

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// newRedis builds the report cache's client from the settings: one
// go-redis UniversalClient for every topology.
//
//   - REDIS_URL alone: one server (redis:// or rediss://, credentials,
//     database).
//   - REDIS_URL and REDIS_ADDRS, or REDIS_CLUSTER=true: a Redis Cluster;
//     the URL's host and the addresses are seed nodes (the client learns
//     the others from CLUSTER SLOTS and follows MOVED redirects).
//   - REDIS_MASTER_NAME: Sentinel; the URL's host and REDIS_ADDRS are the
//     sentinels, which name the master (and a new one after a failover).
//
// The URL's scheme, user, password and options apply to every node (the
// sentinels are asked without credentials); rediss:// with
// REDIS_CA_FILE and the client certificate secures every connection, the
// server name checked being the URL's host.
func newRedis(cfg Config) (redis.UniversalClient, error) {
	u, err := redisOptions(cfg)
	if err != nil {
		return nil, err
	}
	return redis.NewUniversalClient(u), nil
}

// redisOptions are newRedis's options; Validate checks the settings
// through it.
func redisOptions(cfg Config) (*redis.UniversalOptions, error) {
	o, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	// rediss:// gives a TLS configuration; REDIS_CA_FILE and the client
	// certificate complete it.
	if o.TLSConfig, err = cfg.Redis.TLS(o.TLSConfig); err != nil {
		return nil, err
	}
	addrs := []string{o.Addr}
	for a := range strings.SplitSeq(cfg.RedisAddrs, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return nil, fmt.Errorf("REDIS_ADDRS: %q is not host:port", a)
		}
		addrs = append(addrs, a)
	}
	cluster := cfg.RedisMasterName == "" && (cfg.RedisCluster || len(addrs) > 1)
	switch {
	case cfg.RedisMasterName != "" && cfg.RedisCluster:
		return nil, fmt.Errorf("REDIS_MASTER_NAME (Sentinel) and REDIS_CLUSTER=true are both set: choose one")
	case cluster && o.DB != 0:
		return nil, fmt.Errorf("REDIS_URL names database %d: a Redis Cluster has database 0 only", o.DB)
	}
	u := &redis.UniversalOptions{
		Addrs: addrs, DB: o.DB, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
		MasterName: cfg.RedisMasterName, IsClusterMode: cluster,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolSize: o.PoolSize, MinIdleConns: o.MinIdleConns, MaxIdleConns: o.MaxIdleConns, ConnMaxIdleTime: o.ConnMaxIdleTime,
		ClientName: o.ClientName, Protocol: o.Protocol,
	}
	// The cache must never slow a report down much when Redis is gone: a
	// refused connection fails at once, and a hung one within these bounds
	// instead of go-redis's 5 s defaults and retries. A cluster still
	// follows MOVED and ASK redirects (MaxRedirects, not MaxRetries).
	if u.DialTimeout == 0 {
		u.DialTimeout = 500 * time.Millisecond
	}
	if u.ReadTimeout == 0 {
		u.ReadTimeout = 500 * time.Millisecond
	}
	if u.WriteTimeout == 0 {
		u.WriteTimeout = 500 * time.Millisecond
	}
	u.MaxRetries = -1
	u.DialerRetries = 1
	u.ContextTimeoutEnabled = true
	return u, nil
}
