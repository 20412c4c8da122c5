package mirror

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The tap's allocation-free lookups must return exactly what
// launch.StickyKey.Value returns, or a user would be bucketed differently by
// the tap and by anyone computing the sample with launch.UserBucket.
func TestStickyValueMatchesLaunchStickyKey(t *testing.T) {
	cookies := [][]string{
		nil,
		{""},
		{"session=abc"},
		{"a=1; session=abc; b=2"},
		{"  session = abc  "},
		{"session=\"abc\""},
		{"session=\""},
		{"session="},
		{"session=; session=second"},
		{"session=bad\\value; session=good"},
		{"session=bad;value"},
		{"session=with space"},
		{"Session=upper; session=lower"},
		{"a=1", "session=second-line"},
		{"session=first", "session=second"},
		{";;session=x;;"},
		{"session=é"},
		{"x" + strings.Repeat("; c=1", 1200) + "; session=long"},
	}
	queries := []string{
		"", "user=u1", "a=1&user=u1&user=u2", "user=&user=u2", "user", "user=a%20b", "user=a+b",
		"user=%zz&user=ok", "us%65r=esc&user=plain", "user=plain&us%65r=esc", "a=1;user=semi&user=ok",
		"&&user=x", "user=x=y", "u%73er=only-escaped", "user=" + strings.Repeat("&a=1", 1200) + "&user=z",
		strings.Repeat("a=1&", 1100) + "user=late",
	}
	headers := [][]string{nil, {""}, {"u1"}, {"", "u2"}, {"u1", "u2"}}
	keys := []string{"header:X-User-Id", "header:x-user-id", "cookie:session", "cookie:bad name", "query:user", "query:a b"}
	for _, ks := range keys {
		k, err := parseSticky(ks)
		if err != nil {
			t.Fatalf("%s: %v", ks, err)
		}
		for _, c := range cookies {
			for _, q := range queries {
				for _, h := range headers {
					r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/", RawQuery: q}}
					if c != nil {
						r.Header["Cookie"] = c
					}
					if h != nil {
						r.Header["X-User-Id"] = h
					}
					gotV, gotOK := k.value(r)
					wantV, wantOK := k.StickyKey.Value(r)
					if gotV != wantV || gotOK != wantOK {
						t.Errorf("%s, cookie %.60q, query %.60q, header %q: got (%q, %v), want (%q, %v)",
							ks, c, q, h, gotV, gotOK, wantV, wantOK)
					}
				}
			}
		}
	}
}

func FuzzStickyValue(f *testing.F) {
	f.Add("session=abc; x=1", "user=u1&x=2", "session", "user")
	f.Add(`session="q"`, "user=a%2Bb", "session", "user")
	f.Add("s=1;s=2", "a;b=1&a=2", "s", "a")
	f.Fuzz(func(t *testing.T, cookie, query, cname, qname string) {
		r := &http.Request{Header: http.Header{"Cookie": {cookie}}, URL: &url.URL{Path: "/", RawQuery: query}}
		for _, ks := range []string{"cookie:" + cname, "query:" + qname} {
			k, err := parseSticky(ks)
			if err != nil {
				continue
			}
			gotV, gotOK := k.value(r)
			wantV, wantOK := k.StickyKey.Value(r)
			if gotV != wantV || gotOK != wantOK {
				t.Fatalf("%s, cookie %q, query %q: got (%q, %v), want (%q, %v)", ks, cookie, query, gotV, gotOK, wantV, wantOK)
			}
		}
	})
}

func TestStickyValueDoesNotAllocate(t *testing.T) {
	r := &http.Request{Header: http.Header{
		"X-User-Id": {"u-1"},
		"Cookie":    {"theme=dark; session=u-1; lang=en"},
	}, URL: &url.URL{Path: "/", RawQuery: "page=2&user=u-1"}}
	for _, ks := range []string{"header:X-User-Id", "cookie:session", "query:user"} {
		k, _ := parseSticky(ks)
		if v, ok := k.value(r); !ok || v != "u-1" {
			t.Fatalf("%s: %q %v", ks, v, ok)
		}
		if n := testing.AllocsPerRun(1000, func() { k.value(r) }); n != 0 {
			t.Errorf("%s: %v allocations", ks, n)
		}
	}
}
