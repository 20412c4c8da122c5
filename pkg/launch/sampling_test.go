package launch

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestStickyKey(t *testing.T) {
	r := httptest.NewRequest("GET", "/a?user=u3", nil)
	r.Header.Set("X-User-Id", "u1")
	r.AddCookie(&http.Cookie{Name: "session", Value: "s2"})
	for spec, want := range map[string]string{"header:x-user-id": "u1", "cookie:session": "s2", "query:user": "u3"} {
		k, err := ParseStickyKey(spec)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := k.Value(r); !ok || v != want {
			t.Errorf("%s: got %q %v, want %q", spec, v, ok, want)
		}
	}
	k, _ := ParseStickyKey("header:X-Missing")
	if _, ok := k.Value(r); ok {
		t.Error("missing header reported as present")
	}
	for _, bad := range []string{"header", "header:", "body:x", "user"} {
		if _, err := ParseStickyKey(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", bad, err)
		}
	}
}

// Buckets spread users evenly, a percentage is exact to 0.01%, and raising
// it only adds users.
func TestBucketsAndSample(t *testing.T) {
	const users = 200000
	counts := map[float64]int{}
	percents := []float64{0.01, 1, 10, 50, 100}
	for u := range users {
		b := UserBucket("launch-1", fmt.Sprint("user-", u))
		if b >= Buckets {
			t.Fatalf("bucket %d out of range", b)
		}
		prevIn := true
		for i := len(percents) - 1; i >= 0; i-- { // from 100% down
			in := InSample(b, percents[i])
			if in && !prevIn {
				t.Fatalf("user in the %v%% sample but not in a larger one", percents[i])
			}
			prevIn = in
			if in {
				counts[percents[i]]++
			}
		}
	}
	for _, p := range percents {
		got := 100 * float64(counts[p]) / users
		// Binomial noise: 4 standard deviations.
		tol := 400 * math.Sqrt(p/100*(1-p/100)/users)
		if math.Abs(got-p) > tol+1e-9 {
			t.Errorf("%v%%: sampled %.4f%% of users (tolerance %.4f)", p, got, tol)
		}
	}
	if InSample(0, 0) || !InSample(Buckets-1, 100) || !InSample(0, 0.01) || InSample(1, 0.01) {
		t.Error("edges of InSample are wrong")
	}
	if UserBucket("launch-1", "u") == UserBucket("launch-2", "u") && UserBucket("launch-1", "v") == UserBucket("launch-2", "v") {
		t.Error("buckets do not depend on the launch")
	}
}

func TestPathFilters(t *testing.T) {
	l := Launch{IncludePaths: []string{"/api/**", "/v2/*/items"}, ExcludePaths: []string{"/api/admin/**", "/api/health"}}
	for p, want := range map[string]bool{
		"/api/users/1": true, "/api": true, "/apix": false, "/v2/shop/items": true, "/v2/shop/x/items": false,
		"/api/admin": false, "/api/admin/users": false, "/api/health": false, "/other": false,
	} {
		if got := l.PathAllowed(p); got != want {
			t.Errorf("PathAllowed(%q) = %v, want %v", p, got, want)
		}
	}
	if !(&Launch{}).PathAllowed("/anything") {
		t.Error("no filters must allow every path")
	}
	for _, bad := range [][]string{{"api/*"}, {"/a/[x"}} {
		l := Launch{Name: "x", ShadowURL: "http://s", IncludePaths: bad}
		if err := l.Normalize(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: %v, want ErrInvalid", bad, err)
		}
	}
	l2 := Launch{Name: "x", ShadowURL: "http://s", MaxRPS: -1}
	if err := l2.Normalize(); !errors.Is(err, ErrInvalid) {
		t.Errorf("max_rps -1: %v", err)
	}
}
