package client

import (
	"errors"
	"fmt"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

func TestAPIErrorIs(t *testing.T) {
	sentinels := []error{ErrBadRequest, ErrUnauthorized, ErrForbidden, ErrNotFound, launch.ErrNotFound, launch.ErrConflict, ErrTooLarge, launch.ErrInvalid, ErrUnavailable}
	for _, c := range []struct {
		status int
		match  []error
	}{
		{400, []error{ErrBadRequest}},
		{401, []error{ErrUnauthorized}},
		{403, []error{ErrForbidden}},
		{404, []error{ErrNotFound, launch.ErrNotFound}},
		{409, []error{launch.ErrConflict}},
		{422, []error{launch.ErrInvalid}},
		{503, []error{ErrUnavailable}},
		{413, []error{ErrTooLarge}},
		{429, nil},
		{500, nil},
	} {
		// Wrapped, as a caller would return it.
		err := fmt.Errorf("pause: %w", &APIError{Status: c.status, Message: "m"})
		for _, s := range sentinels {
			want := false
			for _, m := range c.match {
				want = want || m == s
			}
			if got := errors.Is(err, s); got != want {
				t.Errorf("status %d: errors.Is(%v) = %v, want %v", c.status, s, got, want)
			}
		}
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != c.status || ae.Message != "m" {
			t.Errorf("status %d: errors.As gave %+v", c.status, ae)
		}
	}
	e := &APIError{Status: 409, Message: "launch state conflict: launch is rolled_back; it cannot resume"}
	if want := "409 Conflict: launch state conflict: launch is rolled_back; it cannot resume"; e.Error() != want {
		t.Fatalf("Error() = %q, want %q", e.Error(), want)
	}
}

func TestNew(t *testing.T) {
	for base, ok := range map[string]bool{"http://127.0.0.1:8090": true, "https://reporter/": true,
		"127.0.0.1:8090": false, "ftp://reporter": false, "http://": false, "": false} {
		c, err := New(base)
		if (err == nil) != ok {
			t.Errorf("New(%q): %v, want ok %v", base, err, ok)
		}
		if ok && (c == nil || c.base[len(c.base)-1] == '/') {
			t.Errorf("New(%q) = %+v: the base keeps no trailing slash", base, c)
		}
	}
}
