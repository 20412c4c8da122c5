package mirror

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/launch"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

const userHeader = "X-User-Id"

// versionServer answers every request with "<name> <method> <path>" and
// counts the requests it got.
type versionServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newVersionServer(t *testing.T, name string) *versionServer {
	t.Helper()
	v := &versionServer{}
	v.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s %s", name, r.Method, r.URL.Path)
	}))
	t.Cleanup(v.Close)
	return v
}

func (e *natsEnv) update(t *testing.T, id string, change func(*launch.Launch) error) *launch.Launch {
	t.Helper()
	l, err := e.store.Update(testenv.Context(t), id, change)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitRouting waits until the tap routes launch l at l's revision.
func waitRouting(t *testing.T, s *Service, l *launch.Launch) LaunchRouting {
	t.Helper()
	var r LaunchRouting
	testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if r = s.Routing(l.ID); r.Revision < l.Revision {
			return fmt.Errorf("tap routes launch %s at revision %d, want %d", l.ID, r.Revision, l.Revision)
		}
		return nil
	})
	return r
}

// waitWatcherSees waits until the tap's launch watcher has swapped in a
// snapshot with launch l at l's revision (not the routing table: requests
// must be routed by it from then on).
func waitWatcherSees(t *testing.T, s *Service, l *launch.Launch) {
	t.Helper()
	testenv.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if w := s.watcher.Load(); w != nil {
			if got := w.Snapshot().ByID[l.ID]; got != nil && got.Revision >= l.Revision {
				return nil
			}
		}
		return errNotYet
	})
}

func rollback(l *launch.Launch) error {
	l.Status, l.LivePercent = launch.StatusRolledBack, 0
	return nil
}

// do sends one request as user (no user header when user is "") and
// returns the response and its body.
func do(t *testing.T, c *http.Client, method, url, user string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if method == "POST" || method == "PUT" {
		body = strings.NewReader(`{"n":1}`)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set(userHeader, user)
	}
	resp, b := send(t, c, req)
	return resp, string(b)
}

// parallel runs f(i) for i in [0, n) on 8 goroutines.
func parallel(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}

// settled waits until every envelope the tap started is published or
// dropped, then reads exactly the published ones (failing on drops) and
// checks that nothing else was published.
func (e *natsEnv) settled(t *testing.T, s *Service, since Stats) []*envelope.Envelope {
	t.Helper()
	var st Stats
	testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		st = s.Stats()
		if st.Sampled != st.Published+st.DroppedTotal() || st.QueueDepth != 0 || st.PendingAcks != 0 {
			return fmt.Errorf("pipeline busy: %+v", st)
		}
		return nil
	})
	if d := st.DroppedTotal() - since.DroppedTotal(); d != 0 {
		t.Fatalf("%d envelopes dropped: %+v", d, st.Dropped)
	}
	var out []*envelope.Envelope
	for range st.Published - since.Published {
		env, _ := e.next(t, 10*time.Second)
		out = append(out, env)
	}
	e.expectNone(t)
	return out
}

// usersIn returns the users whose bucket for the launch is within percent.
func usersIn(id string, users []string, percent float64) map[string]bool {
	in := map[string]bool{}
	for _, u := range users {
		if launch.InSample(launch.UserBucket(id, u), percent) {
			in[u] = true
		}
	}
	return in
}

func userIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "user-" + strconv.Itoa(i)
	}
	return out
}

// countByUser counts envelopes per user header.
func countByUser(envs []*envelope.Envelope, launchID string, t *testing.T) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, env := range envs {
		if env.LaunchID != launchID {
			t.Fatalf("envelope for launch %s, want %s", env.LaunchID, launchID)
		}
		got[env.Request.Headers.Get(userHeader)]++
	}
	return got
}

// With a sticky key, a user's requests are all sampled or none is, the set
// of users is exactly the one launch.InSample gives, and raising the
// percentage keeps every user who was in.
func TestStickySamplingKeepsUsersTogetherAcrossAPercentageChange(t *testing.T) {
	e, s, c, l := startSticky(t, 10)
	users := userIDs(300)
	const perUser = 2

	round := func(percent float64) map[string]bool {
		t.Helper()
		before := s.Stats()
		parallel(len(users)*perUser, func(i int) {
			do(t, c, "GET", "http://"+s.Addr()+"/orders/"+strconv.Itoa(i), users[i%len(users)])
		})
		got := countByUser(e.settled(t, s, before), l.ID, t)
		want := usersIn(l.ID, users, percent)
		for u, n := range got {
			if n != perUser {
				t.Errorf("at %v%%: user %s has %d of %d requests sampled", percent, u, n, perUser)
			}
		}
		sameUsers(t, fmt.Sprintf("at %v%%", percent), setOf(got), want)
		if st := s.Stats(); st.StickyKeyMissing != 0 {
			t.Errorf("sticky key missing counted %d times", st.StickyKeyMissing)
		}
		return want
	}
	in10 := round(10)
	l = e.update(t, l.ID, func(l *launch.Launch) error { l.SamplePercent = 50; return nil })
	waitRouting(t, s, l)
	in50 := round(50)
	for u := range in10 {
		if !in50[u] {
			t.Errorf("user %s was sampled at 10%% but not at 50%%", u)
		}
	}
	if len(in10) == 0 || len(in50) <= len(in10) {
		t.Errorf("%d users at 10%%, %d at 50%%", len(in10), len(in50))
	}
}

// sameUsers fails the test when the sets of sampled users differ.
func sameUsers(t *testing.T, what string, got, want map[string]bool) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("%s: sampled users %v, want %v", what, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}

// startSticky starts a tap in front of a version server with a launch
// sampling percent of the users named by the user header, routed.
func startSticky(t *testing.T, percent float64) (*natsEnv, *Service, *http.Client, *launch.Launch) {
	t.Helper()
	e := newNATSEnv(t)
	primary := newVersionServer(t, "primary")
	s, _ := startMirror(t, e, primary.URL, nil)
	l := e.create(t, launch.Launch{SamplePercent: percent, StickyKey: "header:" + userHeader}, nil)
	waitRouting(t, s, l)
	return e, s, newClient(t), l
}

func setOf(m map[string]int) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// At 0.01% (one bucket in 10,000) the sample is exact: the users sampled
// among 12,000 distinct ones are exactly those in bucket 0. The tap's
// routing decision (built by its watcher from the bucket) is asked for all
// of them; the sampled users and 500 others then go through the proxy.
func TestStickySamplingIsExactAtOneBasisPoint(t *testing.T) {
	e, s, c, l := startSticky(t, 0.01)
	users := userIDs(12000)
	// Whatever the launch id, make sure one user is in the sample, so that
	// the assertion below is not about an empty set only.
	for i := 0; ; i++ {
		if u := "extra-" + strconv.Itoa(i); launch.UserBucket(l.ID, u) == 0 {
			users = append(users, u)
			break
		}
	}
	want := usersIn(l.ID, users, 0.01)
	decided := map[string]bool{}
	r := httptest.NewRequest("GET", "/p", nil)
	for _, u := range users {
		r.Header.Set(userHeader, u)
		if _, _, mask := s.currentRoutes().decide(r, s.stats, true); mask != 0 {
			decided[u] = true
		}
	}
	t.Logf("%d of %d users sampled at 0.01%%", len(decided), len(users))
	if len(want) == 0 {
		t.Error("no user is in the sample")
	}
	sameUsers(t, "decided", decided, want)

	send := slices.Sorted(maps.Keys(want))
	send = append(send, users[:500]...)
	before := s.Stats()
	parallel(len(send), func(i int) { do(t, c, "GET", "http://"+s.Addr()+"/p", send[i]) })
	sameUsers(t, "through the proxy", setOf(countByUser(e.settled(t, s, before), l.ID, t)), want)
}

// A request without the sticky key's value is sampled at random at the
// launch's percentage, and counted.
func TestMissingStickyKeyFallsBackToRandomAndIsCounted(t *testing.T) {
	e := newNATSEnv(t)
	primary := newVersionServer(t, "primary")
	s, _ := startMirror(t, e, primary.URL, nil)
	c := newClient(t)
	half := e.create(t, launch.Launch{SamplePercent: 50, StickyKey: "cookie:session"}, nil)
	all := e.create(t, launch.Launch{SamplePercent: 100, StickyKey: "query:user"}, nil)
	waitMirrored(t, s, half.ID, all.ID)
	const n = 400
	before := s.Stats()
	parallel(n, func(i int) { do(t, c, "GET", "http://"+s.Addr()+"/p", "") })
	byLaunch := map[string]int{}
	for _, env := range e.settled(t, s, before) {
		byLaunch[env.LaunchID]++
	}
	// Binomial(400, 0.5): outside [140, 260] is six standard deviations.
	if byLaunch[all.ID] != n || byLaunch[half.ID] < 140 || byLaunch[half.ID] > 260 {
		t.Errorf("sampled %d at 100%% and %d at 50%% of %d requests without a sticky key", byLaunch[all.ID], byLaunch[half.ID], n)
	}
	if st := s.Stats(); st.StickyKeyMissing != 2*n {
		t.Errorf("sticky key missing counted %d times, want %d (2 launches × %d requests)", st.StickyKeyMissing, 2*n, n)
	}
	if m := testenv.Metrics(t, s.AdminAddr()); !strings.Contains(m, `darklaunch_mirror_sticky_key_missing_total{use="sample"} 800`) {
		t.Errorf("metrics lack the sticky key missing count:\n%s", grepLines(m, "sticky"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

func TestPathFiltersSelectWhatIsMirrored(t *testing.T) {
	e := newNATSEnv(t)
	primary := newVersionServer(t, "primary")
	s, _ := startMirror(t, e, primary.URL, nil)
	c := newClient(t)
	l := e.create(t, launch.Launch{SamplePercent: 100, Methods: []string{"GET"},
		IncludePaths: []string{"/api/**", "/health"}, ExcludePaths: []string{"/api/admin/**", "/api/*/secret"}}, nil)
	waitRouting(t, s, l)
	before := s.Stats()
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/orders/1"}, {"GET", "/api"}, {"GET", "/health"}, {"GET", "/api/items/2"},
		{"GET", "/api/admin/users"}, {"GET", "/api/admin"}, {"GET", "/api/orders/secret"}, {"GET", "/apix"},
		{"GET", "/healthz"}, {"GET", "/other"}, {"POST", "/api/orders/1"},
		// Filters apply to the decoded path: an escaped "a" does not get
		// around an exclude.
		{"GET", "/api/%61dmin/users"}, {"GET", "/api/x/../admin/users"}, {"GET", "/api/orders/./secret"},
	} {
		if resp, _ := do(t, c, r.method, "http://"+s.Addr()+r.path, ""); resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d", r.method, r.path, resp.StatusCode)
		}
	}
	var got []string
	for _, env := range e.settled(t, s, before) {
		got = append(got, env.Request.Method+" "+env.Request.Path)
	}
	slices.Sort(got)
	want := []string{"GET /api", "GET /api/items/2", "GET /api/orders/1", "GET /health"}
	if !slices.Equal(got, want) {
		t.Errorf("mirrored %v, want %v", got, want)
	}
}

// At live_percent 100 the new version answers every request, whatever the
// method, and the client sees its response as is; nothing it serves is
// mirrored. After a rollback, from the moment the tap's watcher has seen
// it, the primary serves everything again and the new version gets no
// request.
func TestLiveRoutingServesFromNewVersionUntilRollback(t *testing.T) {
	e := newNATSEnv(t)
	primary := newVersionServer(t, "primary")
	shadow := newVersionServer(t, "new")
	s, _ := startMirror(t, e, primary.URL, nil)
	c := newClient(t)
	l := e.create(t, launch.Launch{ShadowURL: shadow.URL, StickyKey: "header:" + userHeader},
		func(l *launch.Launch) error { return l.SetLive(100) })
	other := e.create(t, launch.Launch{SamplePercent: 100}, nil) // mirrors what the primary serves
	if l.Status != launch.StatusPromoted {
		t.Fatalf("status %s", l.Status)
	}
	if r := waitRouting(t, s, l); !r.Live || r.Mirrored {
		t.Fatalf("routing %+v", r)
	}
	waitMirrored(t, s, other.ID)

	before := s.Stats()
	methods := []string{"GET", "POST", "PUT", "DELETE", "GET"}
	for i, m := range methods {
		user := ""
		if i%2 == 0 {
			user = "user-" + strconv.Itoa(i)
		}
		resp, body := do(t, c, m, "http://"+s.Addr()+"/api/x", user)
		if want := "new " + m + " /api/x"; resp.StatusCode != 200 || body != want {
			t.Fatalf("%s: %d %q, want %q from the new version", m, resp.StatusCode, body, want)
		}
		for h := range resp.Header {
			if strings.HasPrefix(strings.ToLower(h), "darklaunch") {
				t.Errorf("response carries %s", h)
			}
		}
	}
	if envs := e.settled(t, s, before); len(envs) != 0 {
		t.Errorf("%d envelopes published for requests the new version served", len(envs))
	}
	if primary.hits.Load() != 0 || shadow.hits.Load() != int64(len(methods)) {
		t.Errorf("primary got %d requests, new version %d", primary.hits.Load(), shadow.hits.Load())
	}
	ls := s.LiveStats()
	if len(ls) != 1 || ls[0].LaunchID != l.ID {
		t.Fatalf("live stats %+v", ls)
	}
	n := uint64(len(methods))
	if nv := ls[0].New; nv.Requests != n || nv.Status["2xx"] != n || nv.Latency.Count != n || nv.Latency.Sum <= 0 ||
		nv.Latency.Buckets[len(nv.Latency.Buckets)-1].Count != n || ls[0].Primary.Requests != 0 {
		t.Errorf("live stats %+v", ls[0])
	}
	if st := s.Stats(); st.LiveStickyKeyMissing != 2 {
		t.Errorf("live sticky key missing %d, want 2", st.LiveStickyKeyMissing)
	}
	m := testenv.Metrics(t, s.AdminAddr())
	for _, want := range []string{
		fmt.Sprintf(`darklaunch_mirror_live_requests_total{launch=%q,version="new"} 5`, l.ID),
		fmt.Sprintf(`darklaunch_mirror_live_responses_total{class="2xx",launch=%q,version="new"} 5`, l.ID),
		fmt.Sprintf(`darklaunch_mirror_live_latency_seconds_count{launch=%q,version="new"} 5`, l.ID),
		"darklaunch_mirror_launches_live 1",
		"darklaunch_mirror_live_percent 100",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "live"))
		}
	}

	// Rollback: once the watcher has the new snapshot, no request reaches
	// the new version, and the other launch mirrors what the primary serves.
	l = e.update(t, l.ID, rollback)
	waitWatcherSees(t, s, l)
	hits := shadow.hits.Load()
	before = s.Stats()
	parallel(100, func(i int) {
		if resp, body := do(t, c, "GET", "http://"+s.Addr()+"/api/x", "user-"+strconv.Itoa(i)); body != "primary GET /api/x" {
			t.Errorf("after the rollback: %d %q", resp.StatusCode, body)
		}
	})
	if got := shadow.hits.Load(); got != hits {
		t.Errorf("the new version got %d requests after the rollback", got-hits)
	}
	envs := e.settled(t, s, before)
	if len(envs) != 100 {
		t.Errorf("%d envelopes after the rollback, want 100 for the other launch", len(envs))
	}
	for _, env := range envs {
		if env.LaunchID != other.ID || string(env.Primary.Body) != "primary GET /api/x" {
			t.Fatalf("envelope for %s with body %q", env.LaunchID, env.Primary.Body)
		}
	}
	if r := s.Routing(l.ID); r.Live || r.Mirrored {
		t.Errorf("routing after rollback %+v", r)
	}

	// A mirrored launch rolled back publishes nothing either.
	other = e.update(t, other.ID, rollback)
	waitWatcherSees(t, s, other)
	before = s.Stats()
	parallel(50, func(i int) { do(t, c, "GET", "http://"+s.Addr()+"/api/x", "") })
	if envs := e.settled(t, s, before); len(envs) != 0 {
		t.Errorf("%d envelopes after the mirrored launch was rolled back", len(envs))
	}
	if m := testenv.Metrics(t, s.AdminAddr()); !strings.Contains(m, "darklaunch_mirror_launches_live 0") {
		t.Errorf("metrics:\n%s", grepLines(m, "launches_"))
	}
}

// At live_percent 30 with a sticky key, each user is served by one version
// only, the users on the new version are exactly those launch.InSample puts
// within 30%, and a step to 60% keeps them there. Paths outside the filters
// always go to the primary and are not counted as live traffic.
func TestLiveRoutingIsStickyAndExact(t *testing.T) {
	e := newNATSEnv(t)
	primary := newVersionServer(t, "primary")
	shadow := newVersionServer(t, "new")
	s, _ := startMirror(t, e, primary.URL, nil)
	c := newClient(t)
	l := e.create(t, launch.Launch{ShadowURL: shadow.URL, StickyKey: "header:" + userHeader, IncludePaths: []string{"/api/**"}},
		func(l *launch.Launch) error { return l.SetLive(30) })
	waitRouting(t, s, l)
	users := userIDs(300)
	reqs := []struct{ method, path string }{{"GET", "/api/a"}, {"POST", "/api/b"}, {"DELETE", "/api/c"}}

	round := func(percent float64) map[string]bool {
		t.Helper()
		var mu sync.Mutex
		side := map[string]map[string]bool{} // user → versions seen
		parallel(len(users)*len(reqs), func(i int) {
			u, r := users[i%len(users)], reqs[i/len(users)]
			_, body := do(t, c, r.method, "http://"+s.Addr()+r.path, u)
			version, _, _ := strings.Cut(body, " ")
			mu.Lock()
			if side[u] == nil {
				side[u] = map[string]bool{}
			}
			side[u][version] = true
			mu.Unlock()
			// Outside the filters: the primary, whoever the user is.
			if _, body := do(t, c, "GET", "http://"+s.Addr()+"/static/logo", u); body != "primary GET /static/logo" {
				t.Errorf("user %s got %q for a path outside the filters", u, body)
			}
		})
		onNew := map[string]bool{}
		for u, vs := range side {
			if len(vs) != 1 {
				t.Errorf("at %v%%: user %s was served by %v", percent, u, slices.Sorted(maps.Keys(vs)))
			}
			if vs["new"] {
				onNew[u] = true
			}
		}
		want := usersIn(l.ID, users, percent)
		if !maps.Equal(onNew, want) {
			t.Errorf("at %v%%: %d users on the new version, want exactly the %d launch.InSample gives", percent, len(onNew), len(want))
		}
		return want
	}
	in30 := round(30)
	ls := s.LiveStats()
	k := uint64(len(reqs))
	if len(ls) != 1 || ls[0].New.Requests != k*uint64(len(in30)) || ls[0].Primary.Requests != k*uint64(len(users)-len(in30)) ||
		ls[0].Primary.Status["2xx"] != ls[0].Primary.Requests || ls[0].Primary.Latency.Count != ls[0].Primary.Requests {
		t.Errorf("live stats %+v, want %d new and %d primary requests", ls, k*uint64(len(in30)), k*uint64(len(users)-len(in30)))
	}

	l = e.update(t, l.ID, func(l *launch.Launch) error { return l.SetLive(60) })
	waitRouting(t, s, l)
	in60 := round(60)
	for u := range in30 {
		if !in60[u] {
			t.Errorf("user %s was on the new version at 30%% but not at 60%%", u)
		}
	}
	if len(in30) == 0 || len(in60) <= len(in30) {
		t.Errorf("%d users at 30%%, %d at 60%%", len(in30), len(in60))
	}
	if st := s.Stats(); st.LiveStickyKeyMissing != 0 || st.Sampled != 0 {
		t.Errorf("stats %+v", st)
	}
}

// The primary side of a live launch is still mirrored for other launches,
// and its statuses are counted whether the request was sampled or not.
func TestLivePrimarySideIsCountedAndMirrored(t *testing.T) {
	e := newNATSEnv(t)
	primary := newPrimary(t, nil)
	shadow := newVersionServer(t, "new")
	s, _ := startMirror(t, e, primary.URL, nil)
	c := newClient(t)
	l := e.create(t, launch.Launch{ShadowURL: shadow.URL, StickyKey: "header:" + userHeader},
		func(l *launch.Launch) error { return l.SetLive(30) })
	mirrored := e.create(t, launch.Launch{SamplePercent: 100, Methods: []string{"GET"}}, nil)
	waitRouting(t, s, l)
	waitMirrored(t, s, mirrored.ID)
	user := ""
	for i := 0; user == ""; i++ {
		if u := "p-" + strconv.Itoa(i); !launch.InSample(launch.UserBucket(l.ID, u), 30) {
			user = u
		}
	}
	before := s.Stats()
	for _, r := range []struct {
		method, path string
		status       int
	}{{"GET", "/small", 200}, {"GET", "/missing", 404}, {"GET", "/small", 200}, {"POST", "/echo", 201}} {
		if resp, _ := do(t, c, r.method, "http://"+s.Addr()+r.path, user); resp.StatusCode != r.status {
			t.Fatalf("%s %s: %d", r.method, r.path, resp.StatusCode)
		}
	}
	envs := e.settled(t, s, before) // POST is not sampled: GET only
	ps := s.LiveStats()[0].Primary
	if shadow.hits.Load() != 0 || ps.Requests != 4 || ps.Status["2xx"] != 3 || ps.Status["4xx"] != 1 || ps.Latency.Count != 4 || len(envs) != 3 {
		t.Errorf("new version %d requests; primary side %+v; %d envelopes", shadow.hits.Load(), ps, len(envs))
	}
	for _, env := range envs {
		if env.LaunchID != mirrored.ID || env.Request.Headers.Get(userHeader) != user {
			t.Errorf("envelope for %s from %q", env.LaunchID, env.Request.Headers.Get(userHeader))
		}
	}
}

// A new version that cannot be reached answers 502, counted as its error
// class and not as a primary error; the request is not retried on the
// primary.
func TestLiveNewVersionDownIs502AndCounted(t *testing.T) {
	e := newNATSEnv(t)
	primary := newVersionServer(t, "primary")
	s, _ := startMirror(t, e, primary.URL, nil)
	c := newClient(t)
	down := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	l := e.create(t, launch.Launch{ShadowURL: down}, func(l *launch.Launch) error { return l.SetLive(100) })
	waitRouting(t, s, l)
	if resp, _ := do(t, c, "GET", "http://"+s.Addr()+"/x", ""); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", resp.StatusCode)
	}
	nv := s.LiveStats()[0].New
	if nv.Requests != 1 || nv.Status[ClassError] != 1 || nv.Status["5xx"] != 0 || primary.hits.Load() != 0 || s.Stats().ProxyErrors != 0 {
		t.Errorf("new version %+v, primary %d requests, stats %+v", nv, primary.hits.Load(), s.Stats())
	}
}

// Two live launches for one service (the API should not allow it): the
// newest serves, and the tap says so through Routing; RoutingChanged
// signals each new routing table.
func TestNewestOfSeveralLiveLaunchesServes(t *testing.T) {
	e := newNATSEnv(t)
	primary := newVersionServer(t, "primary")
	older := newVersionServer(t, "older")
	newer := newVersionServer(t, "newer")
	s, _ := startMirror(t, e, primary.URL, nil)
	c := newClient(t)
	a := e.create(t, launch.Launch{ShadowURL: older.URL}, func(l *launch.Launch) error { return l.SetLive(100) })
	waitRouting(t, s, a)
	changed := s.RoutingChanged()
	b := e.create(t, launch.Launch{ShadowURL: newer.URL}, func(l *launch.Launch) error { return l.SetLive(100) })
	waitRouting(t, s, b)
	select {
	case <-changed:
	default:
		t.Error("RoutingChanged not closed after the routing table changed")
	}
	if ra, rb := s.Routing(a.ID), s.Routing(b.ID); ra.Live || !rb.Live {
		t.Fatalf("routing: older %+v, newer %+v", ra, rb)
	}
	if _, body := do(t, c, "GET", "http://"+s.Addr()+"/x", ""); body != "newer GET /x" {
		t.Errorf("served %q", body)
	}
	// Rolling back the newer one hands live traffic to the older.
	b = e.update(t, b.ID, rollback)
	waitWatcherSees(t, s, b)
	if _, body := do(t, c, "GET", "http://"+s.Addr()+"/x", ""); body != "older GET /x" {
		t.Errorf("served %q", body)
	}
}
