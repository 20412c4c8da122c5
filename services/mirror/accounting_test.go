package mirror

import (
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// accountedBy reads what one tap reported of each launch.
func accountedBy(t *testing.T, kv jetstream.KeyValue, s *Service, ids ...string) map[string]live.Counts {
	t.Helper()
	out := map[string]live.Counts{}
	for _, id := range ids {
		cs, err := live.ReadCounts(testenv.Context(t), kv, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Process == s.acct.ledger.Process() {
				out[id] = c
			}
		}
	}
	return out
}

// matchesStats checks that a tap's reported counts, summed over the
// launches, are its Prometheus counters, and that each launch balances
// (sampled = published + dropped) once the tap is drained.
func matchesStats(s *Service, byLaunch map[string]live.Counts, drained bool) error {
	st := s.Stats()
	var sampled, published uint64
	dropped := map[string]uint64{}
	for id, c := range byLaunch {
		if c.Role != live.RoleTap || c.LaunchID != id {
			return fmt.Errorf("counts of %s: %+v", id, c)
		}
		sampled += c.Sampled
		published += c.Published
		for r, n := range c.Dropped {
			dropped[r] += n
		}
		if drained && c.Sampled != c.Published+live.Total(c.Dropped) {
			return fmt.Errorf("launch %s does not balance: %+v", id, c)
		}
	}
	for r, n := range st.Dropped {
		if n == 0 {
			delete(st.Dropped, r)
		}
	}
	if sampled != st.Sampled || published != st.Published || !maps.Equal(dropped, st.Dropped) {
		return fmt.Errorf("reported sampled %d published %d dropped %v; the tap counted %+v", sampled, published, dropped, st)
	}
	return nil
}

// Two taps report their counts per launch to the accounting bucket while
// they run and once more after their drain: one drops on a full queue,
// the other on a primary that is gone; each tap's counts per launch add
// up to its metrics, and each launch balances after shutdown.
func TestAccountingPerLaunchAndTap(t *testing.T) {
	e := newNATSEnv(t)
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := live.OpenAccountingBucket(testenv.Context(t), js)
	if err != nil {
		t.Fatal(err)
	}
	primary := newPrimary(t, nil)
	gone := httptestClosedURL(t)

	release := make(chan struct{})
	// Tap a publishes through one publisher held by the hook and a queue
	// of one: what comes after is dropped (queue_full).
	a, stopA := startMirror(t, e, primary.URL, func(c *Config) {
		c.TapID, c.QueueSize, c.Publishers, c.LiveReportInterval = "tap-a", 1, 1, 50*time.Millisecond
	}, func(s *Service) { s.publishHook = func(*envelope.Envelope) { <-release } })
	b, stopB := startMirror(t, e, gone, func(c *Config) { c.TapID, c.LiveReportInterval = "tap-b", 50*time.Millisecond })
	l1 := e.createLaunch(t, 100, nil, nil)
	l2 := e.createLaunch(t, 100, nil, func(l *launch.Launch) error { l.Methods = []string{"GET"}; return nil })
	waitMirrored(t, a, l1.ID, l2.ID)
	waitMirrored(t, b, l1.ID, l2.ID)

	c := newClient(t)
	for range 5 {
		get(t, c, "GET", "http://"+a.Addr()+"/small", nil)
	}
	for range 3 {
		if resp, _ := get(t, c, "GET", "http://"+b.Addr()+"/small", nil); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("tap b answered %d", resp.StatusCode)
		}
	}
	// Reported while running.
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, s := range []*Service{a, b} {
			got := accountedBy(t, kv, s, l1.ID, l2.ID)
			if len(got) != 2 {
				return fmt.Errorf("tap %s reported %d launches", s.cfg.TapID, len(got))
			}
			if err := matchesStats(s, got, false); err != nil {
				return err
			}
		}
		return nil
	})
	if st := a.Stats(); st.Sampled != 10 || st.Dropped[ReasonQueueFull] < 8 {
		t.Fatalf("tap a: %+v", st)
	}
	if st := b.Stats(); st.Sampled != 6 || st.Dropped[ReasonPrimaryError] != 6 {
		t.Fatalf("tap b: %+v", st)
	}

	close(release)
	stopA()
	stopB()
	// The final reports, after the drains.
	total := map[string]uint64{}
	for _, s := range []*Service{a, b} {
		got := accountedBy(t, kv, s, l1.ID, l2.ID)
		if err := matchesStats(s, got, true); err != nil {
			t.Error(err)
		}
		for id, c := range got {
			total[id] += c.Sampled
		}
	}
	// Both taps add up in the launch's sum.
	for _, id := range []string{l1.ID, l2.ID} {
		cs, err := live.ReadCounts(testenv.Context(t), kv, id)
		if err != nil {
			t.Fatal(err)
		}
		sum := live.SumCounts(cs)
		if sum.Taps != 2 || sum.Sampled != 8 || total[id] != 8 || sum.Published+live.Total(sum.Dropped) != 8 || sum.Dropped[ReasonPrimaryError] != 3 {
			t.Errorf("launch %s: %+v", id, sum)
		}
	}

	// Tap a restarts with the same id: a new incarnation, a new key; its
	// predecessor's counts stay and the two add up.
	a2, stopA2 := startMirror(t, e, primary.URL, func(c *Config) { c.TapID = "tap-a" })
	waitMirrored(t, a2, l1.ID, l2.ID)
	for range 2 {
		get(t, c, "GET", "http://"+a2.Addr()+"/small", nil)
	}
	stopA2()
	if a2.acct.ledger.Process() == a.acct.ledger.Process() {
		t.Fatal("a restarted tap writes under its predecessor's key")
	}
	cs, err := live.ReadCounts(testenv.Context(t), kv, l1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sum := live.SumCounts(cs); sum.Taps != 3 || sum.Sampled != 10 || sum.Published+live.Total(sum.Dropped) != 10 {
		t.Errorf("after a restart: %+v", sum)
	}
}

// httptestClosedURL is the URL of a server that is gone (connection
// refused).
func httptestClosedURL(t *testing.T) string {
	t.Helper()
	srv := newVersionServer(t, "gone")
	srv.Close()
	return srv.URL
}
