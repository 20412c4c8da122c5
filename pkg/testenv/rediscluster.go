package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartRedisCluster starts a Redis Cluster of masters private
// redis-server processes (no replicas, no persistence), joins them with
// `redis-cli --cluster create` and waits until every node reports
// cluster_state:ok. It returns the nodes' addresses.
func StartRedisCluster(t testing.TB, masters int) []string {
	t.Helper()
	if masters < 3 {
		t.Fatalf("a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	var addrs []string
	for range masters {
		dir := t.TempDir()
		port := FreePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		p := newProcess(t, "redis-server", dir, addr, 10*time.Second,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000")
		p.Start()
		addrs = append(addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(lookBinary(t, "redis-cli"), args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, addr := range addrs {
		host, port, _ := strings.Cut(addr, ":")
		CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			out, err := exec.Command(lookBinary(t, "redis-cli"), "-h", host, "-p", port, "cluster", "info").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "cluster_state:ok") {
				return fmt.Errorf("redis cluster node %s is not ready: %v %.80s", addr, err, out)
			}
			return nil
		})
	}
	return addrs
}

// StartRedisSentinel starts a private Redis Sentinel (redis-server
// --sentinel) that monitors the master at masterAddr under name, with a
// quorum of 1, and returns its address once it knows the master.
func StartRedisSentinel(t testing.TB, name, masterAddr string) string {
	t.Helper()
	dir := t.TempDir()
	port := FreePort(t)
	host, mport, _ := strings.Cut(masterAddr, ":")
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 2000\n",
		port, dir, name, host, mport, name)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := newProcess(t, "redis-server", dir, addr, 10*time.Second, conf, "--sentinel")
	p.Start()
	CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		out, err := exec.Command(lookBinary(t, "redis-cli"), "-p", strconv.Itoa(port), "sentinel", "get-master-addr-by-name", name).CombinedOutput()
		if err != nil || !strings.Contains(string(out), mport) {
			return fmt.Errorf("sentinel does not know master %s yet: %v %.80s", name, err, out)
		}
		return nil
	})
	return addr
}
