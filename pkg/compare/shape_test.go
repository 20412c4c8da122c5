package compare

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestStringShapeClasses(t *testing.T) {
	for _, c := range []struct {
		in    string
		class uint8
		name  string
	}{
		{"", ClassEmpty, "string/empty"},
		{"42", ClassInteger, "string/integer"},
		{"-7", ClassInteger, "string/integer"},
		{"3.14", ClassDecimal, "string/decimal"},
		{"-0.5", ClassDecimal, "string/decimal"},
		{"1.", ClassText, "string/text"},
		{"f47ac10b-58cc-4372-a567-0e02b2c3d479", ClassUUID, "string/uuid (v4, lower)"},
		{"F47AC10B-58CC-7372-A567-0E02B2C3D479", ClassUUID, "string/uuid (v7, upper)"},
		{"01ARZ3NDEKTSV4RRFFQ69G5FAV", ClassULID, "string/ulid"},
		{"01arz3ndektsv4rrffq69g5fav", ClassULID, "string/ulid"},
		{"9f86d081884c7d65", ClassHex, "string/hex (lower, 12-23 chars)"},
		{"9F86D081884C7D659A2F", ClassHex, "string/hex (upper, 12-23 chars)"},
		{"aGVsbG8gd29ybGQ9", ClassBase64, "string/base64 (12-23 chars)"},
		{"dGVzdA4+/w==", ClassBase64, "string/base64 (12-23 chars)"},
		{"V1StGXR8_Z5jdHi6B-myT", ClassBase64, "string/base64 (12-23 chars)"},
		{"2024-03-01T12:30:45Z", ClassRFC3339, "string/rfc3339 (s, Z)"},
		{"2024-03-01T12:30:45.123Z", ClassRFC3339, "string/rfc3339 (ms, Z)"},
		{"2024-03-01T12:30:45.123456+01:00", ClassRFC3339, "string/rfc3339 (µs, offset)"},
		{"2024-03-01T12:30:45.123456789-0500", ClassRFC3339, "string/rfc3339 (ns, offset)"},
		{"2024-03-01T12:30:45.12345678Z", ClassRFC3339, "string/rfc3339 (8 digits, Z)"},
		{"2024-03-01T12:30:45", ClassRFC3339, "string/rfc3339 (s, no zone)"},
		{"2024-03-01 12:30:45.123", ClassDateTime, "string/datetime (ms, no zone)"},
		{"2024-03-01", ClassDate, "string/date"},
		{"Fri, 01 Mar 2024 12:30:45 GMT", ClassHTTPDate, "string/http-date"},
		{"Friday, 01-Mar-24 12:30:45 GMT", ClassHTTPDate, "string/http-date"},
		{"Fri Mar  1 12:30:45 2024", ClassHTTPDate, "string/http-date"},
		{"192.0.2.1", ClassIPv4, "string/ipv4"},
		{"2001:db8::1", ClassIPv6, "string/ipv6"},
		{"::ffff:192.0.2.1", ClassIPv6, "string/ipv6"},
		{"192.0.2.1:8080", ClassIPPort, "string/ip:port"},
		{"[2001:db8::1]:443", ClassIPPort, "string/ip:port"},
		{"api.example.com", ClassHost, "string/host"},
		{"pod-7f9c.svc.cluster.local.", ClassHost, "string/host"},
		{"api.example.com:8443", ClassHostPort, "string/host:port"},
		{"https://api.example.com/v1?q=1", ClassURL, "string/url (https)"},
		{"http://10.0.0.1:8080/", ClassURL, "string/url (http)"},
		{"wss://stream.example.com", ClassURL, "string/url (wss)"},
		{"s3+https://bucket/key", ClassURL, "string/url (other scheme)"},
		{"alice@example.com", ClassEmail, "string/email"},
		{"hello world", ClassText, "string/text"},
		{"deadbeef", ClassText, "string/text"}, // no digit: a word
		{"pending", ClassText, "string/text"},
		{"1.2.3.4.5", ClassText, "string/text"},
		{"2024-03-01T25:00", ClassText, "string/text"},
		{"999.1.1.1", ClassText, "string/text"},
		{"host:99999", ClassText, "string/text"},
	} {
		sh := StringShape(c.in)
		if sh.Type != ShapeString || sh.Class != c.class || sh.String() != c.name {
			t.Errorf("StringShape(%q) = %+v %q, want class %d %q", c.in, sh, sh.String(), c.class, c.name)
		}
	}
}

func TestShapeOfJSON(t *testing.T) {
	for in, want := range map[string]string{
		`null`: "null", `true`: "boolean", `false`: "boolean", `12.5`: "number", `[1]`: "array", `{"a":1}`: "object",
		`"10.0.0.1:80"`: "string/ip:port", `"\u0031\u0030.0.0.1"`: "string/ipv4", `"a`: "unknown", `1 2`: "unknown",
	} {
		if got := ShapeOfJSON([]byte(in)).String(); got != want {
			t.Errorf("ShapeOfJSON(%s) = %q, want %q", in, got, want)
		}
	}
}

// Fits accepts another value of the same generator, however random, and
// refuses a change of format.
func TestFits(t *testing.T) {
	same := [][2]string{
		{"10.0.0.1:5678", "172.16.254.3:80"},
		{"2024-03-01T12:30:45.123456Z", "2025-12-31T23:59:59.999999Z"},
		{"f47ac10b-58cc-4372-a567-0e02b2c3d479", "0e02b2c3-a567-4372-58cc-f47ac10bd479"},
		{"9f86d081884c7d65", "1234567890123456"}, // a hex id that happens to have no letter
		{"9f86d081884c7d65", "f86d081884c7d65"},  // one leading zero dropped
		{"aGVsbG8gd29ybGQ9", "QUJDREVGR0hJSktMTU5P"},
		{"V1StGXR8_Z5jdHi6B-myT", "abcdefghijklmnopqrstu"}, // an id with no digit
		{"hello world", "x"},
		{"42", "-1000000"},
		{"01ARZ3NDEKTSV4RRFFQ69G5FAV", "01BX5ZZKBKACTAV9WEVGEMMVRZ"},
		{"2024-03-01T12:30:45.123456789Z", "2024-03-01T12:30:45.1234567Z"}, // RFC3339Nano drops trailing zeros
		{"2024-03-01T12:30:45.1234567Z", "2024-03-01T12:30:45.123456789Z"}, // also from the old value
		{"3.25", "3"}, // so do float formatters
	}
	for _, p := range same {
		if old, v := StringShape(p[0]), StringShape(p[1]); !Fits(v, old) {
			t.Errorf("%q (%s) does not fit %q (%s)", p[1], v, p[0], old)
		}
	}
	changed := [][2]string{
		{"10.0.0.1:5678", "10.0.0.1"},
		{"2024-03-01T12:30:45.123456Z", "2024-03-01T12:30:45Z"},
		{"2024-03-01T12:30:45.123456Z", "2024-03-01T12:30:45.120Z"}, // a fixed ms format, not µs with zeros dropped
		{"2024-03-01T12:30:45.120Z", "2024-03-01T12:30:45.123456Z"}, // .120 is of a fixed width
		{"2024-03-01T12:30:45Z", "2024-03-01T12:30:45.123Z"},
		{"3", "3.25"},
		{"2024-03-01T12:30:45.123Z", "2024-03-01T12:30:45.123+00:00"},
		{"2024-03-01T12:30:45Z", "2024-03-01 12:30:45Z"},
		{"f47ac10b-58cc-4372-a567-0e02b2c3d479", "F47AC10B-58CC-4372-A567-0E02B2C3D479"},
		{"f47ac10b-58cc-4372-a567-0e02b2c3d479", "01890a5d-ac96-774b-bcce-b302099a8057"},
		{"9f86d081884c7d65", "9f86d081884c7d659f86d081884c7d65"},
		{"9f86d081884c7d65", "9F86D081884C7D65"},
		{"aGVsbG8gd29ybGQ9", "aGVsbG8gd29ybGQ9aGVsbG8gd29ybGQ9"},
		{"42", "42.0"},
		{"hello world", ""},
		{"https://a.example.com/x", "http://a.example.com/x"},
		{"a@example.com", "a.example.com"},
		{"2001:db8::1", "192.0.2.1"},
		{"api.example.com:80", "api.example.com"},
	}
	for _, p := range changed {
		if old, v := StringShape(p[0]), StringShape(p[1]); Fits(v, old) {
			t.Errorf("%q (%s) fits %q (%s)", p[1], v, p[0], old)
		}
	}
	if Fits(ShapeOfJSON([]byte(`123`)), StringShape("123")) || !Fits(ShapeOfJSON([]byte(`1.5`)), ShapeOfJSON([]byte(`7`))) {
		t.Error("a number must not fit a string, and fit another number")
	}
	if !Fits(Shape{}, StringShape("x")) || !Fits(StringShape("x"), Shape{}) {
		t.Error("the zero Shape is unknown: it fits and is fitted")
	}
}

// Every class has a name, and a name is never empty.
func TestShapeNames(t *testing.T) {
	for c := ClassEmpty; c <= ClassText; c++ {
		if classNames[c] == "" {
			t.Errorf("class %d has no name", c)
		}
	}
	if got := (Shape{Type: 99}).String(); got != "unknown" {
		t.Errorf("bad type: %q", got)
	}
	if s := StringShape(strings.Repeat("ab12", 200)); s.Class != ClassHex || !strings.Contains(s.String(), "384+") {
		t.Errorf("long hex: %s", s)
	}
}

func TestULIDNeedsAPlausibleTimestamp(t *testing.T) {
	// 01ARZ3NDEK is 1469918176385 ms: July 2016.
	if !isULID("01ARZ3NDEKTSV4RRFFQ69G5FAV") {
		t.Error("a ULID of 2016 is not recognized")
	}
	for _, s := range []string{
		"7THPQ5EJ4SV5ERWRN4HKT2FBXK", // Crockford characters, but the year 10000-odd
		"00000000000000000000000000", // no letter
		"0000000000ZZZZZZZZZZZZZZZZ", // 1970
	} {
		if isULID(s) {
			t.Errorf("%s taken for a ULID", s)
		}
	}
	// Random upper-case tokens (as make demo's request ids): about 1 in
	// 87 fits the alphabet and the first character, about 1 in 7,000 also
	// the timestamp window. A fixed seed keeps the count exact.
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [26]byte
	n := 0
	for range 200000 {
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if isULID(string(b[:])) {
			n++
		}
	}
	if n > 100 { // about 28 expected; 2,300 without the timestamp check
		t.Errorf("%d of 200,000 random tokens taken for ULIDs", n)
	}
}
