package compare

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeRoute(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"//", "/"},
		{"/users", "/users"},
		{"/users/", "/users"},
		{"/users/42", "/users/{id}"},
		{"/users/42/orders/7/", "/users/{id}/orders/{id}"},
		{"/v1/users", "/v1/users"},
		{"/users/0", "/users/{id}"},
		{"/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/items/{id}"},
		{"/items/3F2504E0-4F89-11D3-9A0C-0305E82C3301/x", "/items/{id}/x"},
		{"/items/3f2504e04f8911d39a0c0305e82c3301", "/items/{id}"},
		{"/blobs/507f1f77bcf86cd799439011", "/blobs/{id}"},     // 24 hex: an object id
		{"/blobs/deadbeefcafe", "/blobs/deadbeefcafe"},         // 12 hex: kept
		{"/blobs/0123456789abcdef", "/blobs/{id}"},             // exactly 16 hex
		{"/blobs/0123456789abcdeg", "/blobs/0123456789abcdeg"}, // not hex
		{"/items/3f2504e0-4f89-11d3-9a0c-0305e82c330", "/items/3f2504e0-4f89-11d3-9a0c-0305e82c330"},
		{"/users/42?x=1", "/users/{id}"},
		{"/users/42#frag", "/users/{id}"},
		{"users/42", "/users/{id}"},
		{"/a//b", "/a//b"},
		{"/2024-01-01/report", "/2024-01-01/report"},
		{"/-1", "/-1"},
		{"/caf%C3%A9/12", "/caf%C3%A9/{id}"},
	}
	for _, tt := range tests {
		if got := NormalizeRoute(tt.in); got != tt.want {
			t.Errorf("NormalizeRoute(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNormalizeRouteCap(t *testing.T) {
	for _, in := range []string{
		"/" + strings.Repeat("abcdefgh/", 100),
		"/" + strings.Repeat("é", 500),
		"/" + strings.Repeat("x", 254) + "é",
		"/" + strings.Repeat("1/", 1000),
	} {
		got := NormalizeRoute(in)
		if len(got) > MaxRouteLen || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
			t.Errorf("NormalizeRoute(%d bytes) = %q (%d bytes): want at most %d valid UTF-8 bytes ending in ...", len(in), got, len(got), MaxRouteLen)
		}
	}
	exact := "/" + strings.Repeat("z", MaxRouteLen-1)
	if got := NormalizeRoute(exact); got != exact {
		t.Errorf("a route of exactly MaxRouteLen bytes was changed to %q", got)
	}
}
