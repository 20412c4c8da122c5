package testenv

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a JetStream cluster of embedded NATS servers, started as
// nats-server's own cluster tests start theirs (createJetStreamClusterExplicit):
// each node has its server name, its own t.TempDir() store, a client port
// chosen by the system (-1) and explicit routes to every node's cluster
// port. The cluster ports are picked free before any node starts, because
// a JetStream cluster node refuses to start without configured routes, so
// the first one must know the others'. A test stops and starts nodes to
// lose and bring back a member; a node comes back on the same ports and
// store.
type Cluster struct {
	t     testing.TB
	name  string
	nodes []*clusterNode
}

type clusterNode struct {
	opts server.Options
	srv  *server.Server
}

// account is the account the darklaunch streams live in on a server
// without accounts: the global account.
const account = server.DEFAULT_GLOBAL_ACCOUNT

// StartCluster starts an n-node JetStream cluster and waits until its
// meta leader sees every node. It is shut down when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, name: "darklaunch-test"}
	for i := range n {
		c.nodes = append(c.nodes, &clusterNode{opts: server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			// The streams reserve their MaxBytes (10 GiB each) on every
			// replica; a cluster places them only where the reservation
			// fits, so the test nodes claim more than the disk they use.
			JetStreamMaxStore:  1 << 40,
			JetStreamMaxMemory: 1 << 30,
			NoLog:              true,
			NoSigs:             true,
			Cluster:            server.ClusterOpts{Name: c.name, Host: "127.0.0.1", Port: FreePort(t)},
		}})
	}
	t.Cleanup(c.shutdown)
	for i := range c.nodes {
		c.Start(i)
	}
	c.WaitReady()
	return c
}

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.nodes) }

// URL lists the client URLs of every node, comma separated, as NATS_URL
// takes them.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.NodeURL(i)
	}
	return strings.Join(urls, ",")
}

// NodeURL is node i's client URL (known once it started; it keeps it).
func (c *Cluster) NodeURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].opts.Port)
}

// Name is node i's server name.
func (c *Cluster) Name(i int) string { return c.nodes[i].opts.ServerName }

// Running reports whether node i is up.
func (c *Cluster) Running(i int) bool { return c.nodes[i].srv != nil }

// routes are the cluster URLs of the other nodes.
func (c *Cluster) routes(self int) []*url.URL {
	var out []*url.URL
	for i, n := range c.nodes {
		if i != self {
			out = append(out, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", n.opts.Cluster.Port)})
		}
	}
	return out
}

// Start starts node i: the first time on a client port the system picks,
// after a Stop on the same ports and store, with routes to the other
// nodes. It returns once the node accepts clients; WaitReady waits for the
// cluster.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	if n.srv != nil {
		c.t.Fatalf("cluster node %s is already running", n.opts.ServerName)
	}
	opts := n.opts
	opts.Routes = c.routes(i)
	srv, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("cluster node %s: %v", opts.ServerName, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		c.t.Fatalf("cluster node %s did not start", opts.ServerName)
	}
	// Keep the port the system chose, so a restart comes back on it
	// (clients know it).
	n.opts.Port = srv.Addr().(*net.TCPAddr).Port
	n.srv = srv
}

// Stop shuts node i down, as a lost member: its clients reconnect to the
// others, and the streams it led elect a new leader among the rest.
func (c *Cluster) Stop(i int) {
	if n := c.nodes[i]; n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (c *Cluster) shutdown() {
	for i := range c.nodes {
		c.Stop(i)
	}
}

// WaitReady waits until a meta leader sees every running node as a peer
// (waitOnClusterReady in nats-server's tests).
func (c *Cluster) WaitReady() {
	c.t.Helper()
	want := 0
	for i := range c.nodes {
		if c.Running(i) {
			want++
		}
	}
	CheckFor(c.t, 40*time.Second, 20*time.Millisecond, func() error {
		for _, n := range c.nodes {
			if n.srv == nil || !n.srv.JetStreamIsLeader() {
				continue
			}
			if got := len(n.srv.JetStreamClusterPeers()); got < want {
				return fmt.Errorf("meta leader %s sees %d of %d nodes", n.opts.ServerName, got, want)
			}
			return nil
		}
		return fmt.Errorf("no JetStream meta leader in cluster %s", c.name)
	})
}

// StreamLeader is the index of the running node leading the stream (a KV
// bucket's stream is "KV_<bucket>"), or -1 when none does now (an
// election is under way).
func (c *Cluster) StreamLeader(stream string) int {
	for i, n := range c.nodes {
		if n.srv != nil && n.srv.JetStreamIsStreamLeader(account, stream) {
			return i
		}
	}
	return -1
}

// WaitStreamLeader waits until a running node leads the stream, and
// returns its index (waitOnStreamLeader in nats-server's tests).
func (c *Cluster) WaitStreamLeader(stream string) int {
	c.t.Helper()
	leader := -1
	CheckFor(c.t, 30*time.Second, 20*time.Millisecond, func() error {
		if leader = c.StreamLeader(stream); leader < 0 {
			return fmt.Errorf("no leader for stream %s", stream)
		}
		return nil
	})
	return leader
}

// WaitStreamCurrent waits until node i's replica of the stream has caught
// up with its leader (after a restart).
func (c *Cluster) WaitStreamCurrent(i int, stream string) {
	c.t.Helper()
	CheckFor(c.t, 60*time.Second, 50*time.Millisecond, func() error {
		n := c.nodes[i]
		if n.srv == nil {
			return fmt.Errorf("node %s is stopped", n.opts.ServerName)
		}
		if !n.srv.JetStreamIsStreamCurrent(account, stream) {
			return fmt.Errorf("node %s's replica of stream %s is not current", n.opts.ServerName, stream)
		}
		return nil
	})
}
