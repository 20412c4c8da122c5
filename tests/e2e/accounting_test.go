package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/testenv"
	"github.com/darklaunch/darklaunch/services/mirror"
)

// brokenPath is answered by the primary with a broken connection: the tap
// drops its envelopes (primary_error).
const brokenPath = "/api/accounting/broken"

func breakPath(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == brokenPath {
			panic(http.ErrAbortHandler)
		}
		h.ServeHTTP(w, r)
	})
}

// The report's accounting adds up exactly over three taps, a runner and a
// comparator: envelopes are dropped (the primary broke off; tap c holds
// one envelope at a time), skipped (over the launch's max_rps),
// dead-lettered (tap b seals credentials under a key the runner does not
// have) or compared, and once the pipeline is drained nothing is in
// flight or unaccounted. Every number is checked against the services'
// own metrics and ClickHouse.
func TestAccountingAddsUp(t *testing.T) {
	s := startStack(t, wrapPrimary(breakPath))
	l := s.createLaunchWith(map[string]any{"shadow_url": s.shadow.URL, "sample_percent": 100,
		"methods": []string{"GET", "POST"}, "max_rps": 10})

	// Tap b: its own seal key (the runner cannot open what it seals).
	// Tap c: holds one envelope at a time, in a batch sent a second
	// later, so what comes meanwhile is dropped (queue_full).
	otherKeys, _ := testenv.SealKeys(t, "other-tap")
	startTap := func(name string, env map[string]string) *mirror.Service {
		t.Helper()
		cfg := map[string]string{"MIRROR_ADDR": "127.0.0.1:0", "MIRROR_ADMIN_ADDR": "127.0.0.1:0", "MIRROR_PRIMARY_URL": s.primary.URL,
			"MIRROR_TAP_ID": name, "MIRROR_SEAL_KEY_FILE": s.sealKeys, "MIRROR_QUEUE_SIZE": "8192", "MIRROR_BATCH_MAX_DELAY": "5ms"}
		maps.Copy(cfg, env)
		tap, err := mirror.New(load[mirror.Config](t, cfg), logger(name))
		if err != nil {
			t.Fatal(err)
		}
		testenv.Run(t, tap.Run)
		testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			s.do(tap.Addr(), "GET", "/api/users/1", nil)
			if tap.Stats().Sampled == 0 {
				return fmt.Errorf("tap %s has not picked up the launch", name)
			}
			return nil
		})
		return tap
	}
	b := startTap("e2e-tap-b", map[string]string{"MIRROR_SEAL_KEY_FILE": otherKeys})
	c := startTap("e2e-tap-c", map[string]string{"MIRROR_QUEUE_SIZE": "1", "MIRROR_BATCH_MAX_DELAY": "1s"})
	taps := []*mirror.Service{s.mirror, b, c}

	s.waitMirrorSees()
	// Sealed under tap b's key: dead-lettered by the runner (within the
	// launch's max_rps burst, so not skipped first).
	for i := range 4 {
		s.do(b.Addr(), "GET", fmt.Sprintf("/api/users/%d", i), nil, "Authorization", "Bearer secret-"+fmt.Sprint(i))
	}
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := s.runner.Stats().DeadLettered; n != 4 {
			return fmt.Errorf("%d dead-lettered, want 4", n)
		}
		return nil
	})
	// Over max_rps: most of these are skipped.
	for i := range 40 {
		s.send("GET", fmt.Sprintf("/api/users/%d", i), nil)
	}
	// Dropped by the taps.
	for range 3 {
		if code, _, _ := s.send("GET", brokenPath, nil); code != http.StatusBadGateway {
			t.Fatalf("broken path answered %d", code)
		}
	}
	for i := range 3 {
		s.do(c.Addr(), "GET", fmt.Sprintf("/api/users/%d", i), nil)
	}

	var acc *api.Accounting
	testenv.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		var sampled uint64
		for _, tap := range taps {
			st := tap.Stats()
			if st.Sampled != st.Published+st.DroppedTotal() {
				return fmt.Errorf("tap not drained: %+v", st)
			}
			sampled += st.Sampled
		}
		r := s.report(l.ID)
		acc = r.Accounting
		switch {
		case acc == nil:
			return fmt.Errorf("report without accounting")
		case acc.Error != "":
			return fmt.Errorf("accounting error: %s", acc.Error)
		case acc.Sampled != sampled || acc.InFlight != 0 || acc.Unaccounted != 0 || acc.Processes.Runners == 0:
			return fmt.Errorf("not settled yet (taps sampled %d): %+v", sampled, *acc)
		}
		return nil
	})

	// Each number against its own source.
	var published uint64
	dropped := map[string]uint64{}
	for _, tap := range taps {
		st := tap.Stats()
		published += st.Published
		for r, n := range st.Dropped {
			if n > 0 {
				dropped[r] += n
			}
		}
	}
	rst, cst := s.runner.Stats(), s.comparator.Stats()
	compared := s.rows(l.ID, "")
	if acc.Published != published || !maps.Equal(acc.Dropped, dropped) {
		t.Errorf("published %d dropped %v; the taps counted %d %v", acc.Published, acc.Dropped, published, dropped)
	}
	if acc.Replayed != uint64(rst.PairsPublished) || acc.SkippedTotal() != uint64(rst.Skipped) || acc.Skipped["rate_limited"] != uint64(rst.RateLimited) {
		t.Errorf("replayed %d skipped %v; the runner counted %+v", acc.Replayed, acc.Skipped, rst)
	}
	if acc.DeadLettered != uint64(rst.DeadLettered)+cst.DeadLettered || acc.DeadLetterReasons["unsealable"] != uint64(rst.DeadLettered) {
		t.Errorf("dead-lettered %d %v; runner %d, comparator %d", acc.DeadLettered, acc.DeadLetterReasons, rst.DeadLettered, cst.DeadLettered)
	}
	if acc.Compared != compared || acc.Compared != acc.Replayed-cst.DeadLettered {
		t.Errorf("compared %d; ClickHouse has %d rows, replayed %d", acc.Compared, compared, acc.Replayed)
	}
	// Every kind of outcome happened.
	if acc.Dropped[mirror.ReasonPrimaryError] != 3 || acc.Dropped[mirror.ReasonQueueFull] < 2 ||
		acc.Skipped["rate_limited"] == 0 || acc.DeadLetterReasons["unsealable"] == 0 || acc.Compared == 0 || acc.Processes.Taps != 3 {
		t.Errorf("not every outcome was exercised: %+v", *acc)
	}
	if acc.Sampled != acc.Compared+acc.DroppedTotal()+acc.SkippedTotal()+acc.DeadLettered {
		t.Errorf("does not add up: %+v", *acc)
	}
	t.Logf("accounting: %+v", *acc)

	// A loss shows: a tap (another incarnation) reports 5 envelopes
	// published that never reached a runner.
	_, js := testenv.Connect(t, s.nats.URL())
	lost := live.NewLedger(live.RoleTap, "e2e-tap-lost")
	lost.Sampled(l.ID, 5)
	lost.Published(l.ID, 5)
	if _, err := lost.Flush(testenv.Context(t), js); err != nil {
		t.Fatal(err)
	}
	if r := s.report(l.ID); r.Accounting == nil || r.Accounting.Unaccounted != 5 || r.Accounting.Processes.Taps != 4 {
		t.Errorf("after a loss of 5: %+v", r.Accounting)
	}
}
