package testenv

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a JetStream cluster of embedded NATS servers, started as
// nats-server's own cluster tests start theirs (createJetStreamClusterExplicit):
// each node has its server name, its own t.TempDir() store, client and
// cluster ports chosen by the system (-1), and explicit routes to every
// other node.
//
// The routes run through a small TCP relay in front of each node's cluster
// port (its advertised cluster address, so routes learned from gossip use
// it too). That is what lets a test lose a node two ways: Stop shuts it
// down cleanly (it hands its stream leaderships over first, as a drained
// server does), Crash cuts its routes first, so its peers hear nothing
// more from it and elect new leaders only after their election timeout,
// as after a kill -9 or a dead machine. Start brings a node back on the
// same client port and store.
type Cluster struct {
	t     testing.TB
	name  string
	nodes []*clusterNode
	wg    sync.WaitGroup // the relays' goroutines

	mu    sync.Mutex
	links map[*routeLink]struct{}
}

type clusterNode struct {
	opts  server.Options
	relay net.Listener // the node's cluster address as the others know it

	// Under Cluster.mu:
	srv         *server.Server
	id          string // the running server's id (it changes on restart)
	clusterAddr string // where the running server accepts routes
	cut         bool   // crashed: no route to or from it
}

// routeLink is one route connection through a relay: from the node that
// dialed it (-1 until its CONNECT names it) to the node behind the relay.
type routeLink struct {
	from, to int
	in, out  net.Conn
}

func (l *routeLink) close() {
	l.in.Close()
	if l.out != nil {
		l.out.Close()
	}
}

// account is the account the darklaunch streams live in on a server
// without accounts: the global account.
const account = server.DEFAULT_GLOBAL_ACCOUNT

// StartCluster starts an n-node JetStream cluster and waits until its
// meta leader sees every node. It is shut down when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, name: "darklaunch-test", links: map[*routeLink]struct{}{}}
	// The stores are made before the shutdown is registered: cleanups run
	// last-in first-out, so the servers stop before their stores go (a
	// clean-clone run saw a store removed under a running node).
	stores := make([]string, n)
	for i := range stores {
		stores[i] = t.TempDir()
	}
	t.Cleanup(c.shutdown)
	for i := range n {
		relay, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("cluster relay: %v", err)
		}
		c.nodes = append(c.nodes, &clusterNode{relay: relay, opts: server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   stores[i],
			// The streams reserve their MaxBytes (10 GiB each) on every
			// replica; a cluster places them only where the reservation
			// fits, so the test nodes claim more than the disk they use.
			JetStreamMaxStore:  1 << 40,
			JetStreamMaxMemory: 1 << 30,
			NoLog:              true,
			NoSigs:             true,
			Cluster: server.ClusterOpts{Name: c.name, Host: "127.0.0.1", Port: -1,
				Advertise: relay.Addr().String()},
		}})
		c.wg.Go(func() { c.relay(relay, i) })
	}
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

// server is node i's running server, or nil.
func (c *Cluster) server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// Running reports whether node i is up.
func (c *Cluster) Running(i int) bool { return c.server(i) != nil }

// Start starts node i: the first time on a client port the system picks,
// after a Stop or Crash on the same client port and store, with routes to
// the other nodes. It returns once the node accepts clients; WaitReady
// waits for the cluster.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	if c.Running(i) {
		c.t.Fatalf("cluster node %s is already running", n.opts.ServerName)
	}
	opts := n.opts
	for j, other := range c.nodes {
		if j != i {
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: other.relay.Addr().String()})
		}
	}
	srv, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("cluster node %s: %v", opts.ServerName, err)
	}
	c.mu.Lock()
	n.id, n.cut = srv.ID(), false
	c.mu.Unlock()
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		c.t.Fatalf("cluster node %s did not start", opts.ServerName)
	}
	// Keep the client port the system chose, so a restart comes back on
	// it (clients know it).
	n.opts.Port = srv.Addr().(*net.TCPAddr).Port
	c.mu.Lock()
	n.srv, n.clusterAddr = srv, srv.ClusterAddr().String()
	c.mu.Unlock()
}

// Stop shuts node i down cleanly, as a drained server: it steps down
// from the streams it leads, so new leaders take over at once; its
// clients reconnect to the others.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	srv := n.srv
	n.srv, n.clusterAddr = nil, ""
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Crash loses node i as a kill -9 does: its routes are cut first, so no
// step-down or last word reaches its peers, and the streams it led elect
// new leaders only after their election timeout; then it is shut down
// (its clients see their connections close and reconnect elsewhere).
func (c *Cluster) Crash(i int) {
	c.mu.Lock()
	c.nodes[i].cut = true
	for l := range c.links {
		if l.from == i || l.to == i {
			l.close()
		}
	}
	c.mu.Unlock()
	c.Stop(i)
}

func (c *Cluster) shutdown() {
	for i := range c.nodes {
		c.Stop(i)
	}
	c.mu.Lock()
	for _, n := range c.nodes {
		n.relay.Close()
	}
	for l := range c.links {
		l.close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// relay accepts route connections for node i on ln and forwards them to
// its cluster port, until ln is closed.
func (c *Cluster) relay(ln net.Listener, i int) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		c.wg.Go(func() { c.forward(in, i) })
	}
}

// forward carries one route connection to node to, and back, until either
// side closes it or a Crash cuts it. The dialing node is known from the
// server id in its route CONNECT.
func (c *Cluster) forward(in net.Conn, to int) {
	l := &routeLink{from: -1, to: to, in: in}
	c.mu.Lock()
	addr := c.nodes[to].clusterAddr
	if c.nodes[to].cut || addr == "" {
		c.mu.Unlock()
		in.Close()
		return
	}
	c.links[l] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.links, l)
		c.mu.Unlock()
		l.close()
	}()
	out, err := net.DialTimeout("tcp", addr, time.Second)
	c.mu.Lock()
	l.out = out
	cut := c.nodes[to].cut
	c.mu.Unlock()
	if err != nil || cut {
		return
	}
	c.wg.Go(func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := out.Read(buf)
			if n > 0 {
				if _, werr := in.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		l.close()
	})
	buf := make([]byte, 32<<10)
	var head []byte
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if l.from < 0 && len(head) < 16<<10 {
				head = append(head, buf[:n]...)
				if !c.identify(l, head) {
					return
				}
			}
			if _, werr := out.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// identify finds the node that dialed l in the first bytes it sent (the
// route CONNECT carries its server id as "name"); it reports false when
// that node is cut off.
func (c *Cluster) identify(l *routeLink, head []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.nodes {
		if n.id != "" && bytes.Contains(head, []byte(`"name":"`+n.id+`"`)) {
			l.from = k
			return !n.cut
		}
	}
	return true
}

// WaitReady waits until a meta leader sees every running node as a peer
// (waitOnClusterReady in nats-server's tests).
func (c *Cluster) WaitReady() {
	c.t.Helper()
	CheckFor(c.t, 40*time.Second, 20*time.Millisecond, func() error {
		var running []*server.Server
		for i := range c.nodes {
			if srv := c.server(i); srv != nil {
				running = append(running, srv)
			}
		}
		for _, srv := range running {
			if !srv.JetStreamIsLeader() {
				continue
			}
			if got := len(srv.JetStreamClusterPeers()); got < len(running) {
				return fmt.Errorf("meta leader %s sees %d of %d nodes", srv.Name(), got, len(running))
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
	for i := range c.nodes {
		if srv := c.server(i); srv != nil && srv.JetStreamIsStreamLeader(account, stream) {
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
	CheckFor(c.t, 60*time.Second, 20*time.Millisecond, func() error {
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
		srv := c.server(i)
		if srv == nil {
			return fmt.Errorf("node %s is stopped", c.Name(i))
		}
		if !srv.JetStreamIsStreamCurrent(account, stream) {
			return fmt.Errorf("node %s's replica of stream %s is not current", c.Name(i), stream)
		}
		return nil
	})
}
