//go:build faults

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// clusterStreams are the streams the pipeline needs while it runs, KV
// buckets included; each must be R3 on the cluster.
var clusterStreams = []string{stream.EnvelopesStream, stream.PairsStream, stream.DeadLetterStream, "KV_" + launch.Bucket, "KV_" + live.Bucket}

// loseNode crashes node i of the cluster under load (testenv.Cluster.Crash:
// its peers hear nothing more from it, as after a kill -9), waits until
// fresh traffic is stored again, then brings the node back and waits until
// its replicas of clusterStreams have caught up.
func loseNode(t *testing.T, c *testenv.Cluster, s *stack, id string, l *steadyLoad, i int, why string) {
	t.Helper()
	c.Crash(i)
	lost := time.Now()
	t.Logf("node %s (%s) crashed", c.Name(i), why)
	for _, name := range clusterStreams {
		c.WaitStreamLeader(name)
	}
	t.Logf("recovery: every stream led again %v after node %s was lost", time.Since(lost).Round(time.Millisecond), c.Name(i))
	t.Logf("recovery: fresh rows stored %v after node %s was lost (mirror %+v)",
		s.recovered(id, lost, 2*time.Minute).Round(time.Millisecond), c.Name(i), s.mirror.Stats().Dropped)
	l.waitMore(t, faultRate) // a second of load on two nodes
	c.Start(i)
	c.WaitReady()
	for _, name := range clusterStreams {
		c.WaitStreamCurrent(i, name)
	}
	t.Logf("node %s back and current %v after it was lost", c.Name(i), time.Since(lost).Round(time.Millisecond))
}

// TestClusterLosesLeaders: the pipeline runs on a 3-node JetStream
// cluster with R3 streams and buckets (NATS_REPLICAS=3, NATS_URL listing
// the three). Under load, the envelope stream's leader crashes (and is
// brought back), then another node (the pairs stream's leader, if that is
// another node). No request fails, no envelope is lost or stored twice,
// and at most 2% of the sampled envelopes are dropped, each counted.
func TestClusterLosesLeaders(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	s, id, l := faultStack(t, withNATS(c.URL(), 3))
	js := natsClient(t, c.URL())
	for _, name := range clusterStreams {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := js.Stream(ctx, name)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = st.Info(ctx)
		}
		cancel()
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("stream %s: %d replicas, cluster %+v; want R3 on the three nodes", name, info.Config.Replicas, info.Cluster)
		}
	}

	first := c.WaitStreamLeader(stream.EnvelopesStream)
	loseNode(t, c, s, id, l, first, "leader of "+stream.EnvelopesStream)

	second := c.WaitStreamLeader(stream.PairsStream)
	why := "leader of " + stream.PairsStream
	if second == first {
		second, why = (first+1)%c.Size(), "a node other than the first"
	}
	loseNode(t, c, s, id, l, second, why)

	s.settle(l, id, js, 3*time.Minute).check(t, 0.02)
}

// TestFaultNATSNodeLost: a NATS cluster node that leads neither the
// envelope nor the pairs stream crashes under load (its clients move to
// the other nodes), and comes back.
func TestFaultNATSNodeLost(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	s, id, l := faultStack(t, withNATS(c.URL(), 3))
	js := natsClient(t, c.URL())
	lose := 0
	for lose < c.Size()-1 && (lose == c.WaitStreamLeader(stream.EnvelopesStream) || lose == c.WaitStreamLeader(stream.PairsStream)) {
		lose++
	}
	loseNode(t, c, s, id, l, lose, "a follower of the envelope and pairs streams, if one is")
	s.settle(l, id, js, 3*time.Minute).check(t, 0.02)
}
