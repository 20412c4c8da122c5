package envelope

import (
	"strings"
	"testing"
)

func TestScrubError(t *testing.T) {
	for in, want := range map[string]string{
		`Get "http://shadow:8080/api/me?access_token=s3cr3t&x=1": dial tcp 10.0.0.1:8080: connect: connection refused`: `Get "http://shadow:8080/api/me?[REDACTED]": dial tcp 10.0.0.1:8080: connect: connection refused`,
		`Post "https://bob:hunter2@shadow/x#frag": EOF`:                                                                `Post "https://[REDACTED]@shadow/x#[REDACTED]": EOF`,
		`Get "http://user@shadow?token=1": timeout`:                                                                    `Get "http://[REDACTED]@shadow?[REDACTED]": timeout`,
		`replay URL "http://a/b" is fine`:                                                                              `replay URL "http://a/b" is fine`,
		"no url at all":                                                                                                "no url at all",
		`two: http://a/?k=1 and https://b/c?d=2#e then text`:                                                           `two: http://a/?[REDACTED] and https://b/c?[REDACTED] then text`,
	} {
		if got := ScrubError(in); got != want {
			t.Errorf("ScrubError(%q)\n got %q\nwant %q", in, got, want)
		}
		if strings.Contains(ScrubError(in), "s3cr3t") || strings.Contains(ScrubError(in), "hunter2") {
			t.Errorf("secret left in %q", ScrubError(in))
		}
	}
}
