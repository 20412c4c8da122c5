package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// zookeeperJar is where Debian's zookeeper package puts the server.
const zookeeperJar = "/usr/share/java/zookeeper.jar"

// StartZooKeeper starts a private standalone ZooKeeper (Debian's zookeeper
// package, run with java) with data in a temp dir and returns its client
// address host:port.
func StartZooKeeper(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(zookeeperJar); err != nil {
		t.Fatalf("ZooKeeper is not installed (%s): run `make deps` to install the servers integration tests need", zookeeperJar)
	}
	dir := t.TempDir()
	port := FreePort(t)
	cfg := fmt.Sprintf("tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=%s/data\nclientPort=%d\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n", dir, port)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := newProcess(t, "java", dir, addr, 60*time.Second,
		"-Xmx256m", "-cp", zookeeperJar, "-Dzookeeper.log.dir="+dir,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", filepath.Join(dir, "zoo.cfg"))
	p.Start()
	// ZooKeeper accepts connections before it serves them (and a
	// ClickHouse server whose first session failed does not recover its
	// distributed DDL worker): wait until it says it serves.
	CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte("srvr")); err != nil {
			return err
		}
		b, _ := io.ReadAll(conn)
		if !strings.Contains(string(b), "Mode: standalone") {
			return fmt.Errorf("zookeeper does not serve yet: %q", b)
		}
		return nil
	})
	return addr
}

// ClickHouseCluster is a cluster of private clickhouse-server processes
// sharing one ZooKeeper: Nodes[shard][replica] (shards and replicas
// counted from 0; macros {shard} and {replica} are "s<shard+1>" and
// "r<replica+1>"), named Name in every server's remote_servers, with
// internal replication and a distributed DDL queue, so ON CLUSTER
// statements and Replicated tables work.
type ClickHouseCluster struct {
	Name  string
	Nodes [][]*ClickHouse
}

// StartClickHouseCluster starts ZooKeeper and a ClickHouse cluster of
// len(replicas) shards, shard i with replicas[i] replicas, and waits until
// every server accepts connections.
func StartClickHouseCluster(t testing.TB, name string, replicas ...int) *ClickHouseCluster {
	t.Helper()
	zk := StartZooKeeper(t)
	zkHost, zkPort, _ := strings.Cut(zk, ":")
	type node struct{ tcp, interserver int }
	ports := make([][]node, len(replicas))
	var shards strings.Builder
	for s, n := range replicas {
		shards.WriteString("<shard><internal_replication>true</internal_replication>")
		for range n {
			p := node{FreePort(t), FreePort(t)}
			ports[s] = append(ports[s], p)
			fmt.Fprintf(&shards, "<replica><host>127.0.0.1</host><port>%d</port></replica>", p.tcp)
		}
		shards.WriteString("</shard>")
	}
	c := &ClickHouseCluster{Name: name, Nodes: make([][]*ClickHouse, len(replicas))}
	for s := range ports {
		for r, p := range ports[s] {
			extra := fmt.Sprintf(`<interserver_http_port>%d</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <remote_servers><%[2]s>%[3]s</%[2]s></remote_servers>
  <zookeeper><node><host>%[4]s</host><port>%[5]s</port></node><session_timeout_ms>30000</session_timeout_ms></zookeeper>
  <macros><shard>s%[6]d</shard><replica>r%[7]d</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>`, p.interserver, name, shards.String(), zkHost, zkPort, s+1, r+1)
			ch := newClickHouseOn(t, p.tcp, extra)
			ch.Start()
			c.Nodes[s] = append(c.Nodes[s], ch)
		}
	}
	return c
}
