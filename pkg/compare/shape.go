package compare

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// A Shape is what a JSON value looks like, without its content: its JSON
// type and, for a string, a format class (an integer, a UUID, an RFC 3339
// timestamp with its precision and zone, an ip:port ...) with the details
// a generator keeps fixed (a UUID's version, a hex id's case, an id's
// length class). Two values of one generator have the same shape however
// random they are, so a shape the old version never produced is a change
// of format even where the values themselves are noise (see Noise).
//
// The zero Shape is "unknown" (no value was classified).
type Shape struct {
	Type   uint8  // ShapeNull ... ShapeObject; 0 unknown
	Class  uint8  // for strings: ClassEmpty ... ClassText
	Detail uint8  // per class: timestamp precision and zone, UUID version and case, hex case, URL scheme
	Len    uint8  // length class (see lenClass); compared for hex and base64 ids only
	chars  uint16 // which kinds of characters the string holds (see charMask), for Fits
}

// JSON types of a Shape.
const (
	ShapeNull uint8 = iota + 1
	ShapeBool
	ShapeNumber
	ShapeString
	ShapeArray
	ShapeObject
)

// Format classes of a string Shape.
const (
	ClassNone     uint8 = iota // not a string
	ClassEmpty                 // ""
	ClassInteger               // -?[0-9]+
	ClassDecimal               // -?[0-9]+.[0-9]+
	ClassUUID                  // 8-4-4-4-12 hex digits; Detail: version, case
	ClassULID                  // 26 Crockford base32 characters, the first 0-7
	ClassHex                   // 8+ hex digits, at least one letter; Detail: case; Len
	ClassBase64                // 8+ base64 (standard or URL) characters with a digit and a letter; Len
	ClassRFC3339               // 2006-01-02T15:04:05[.frac][Z|±hh:mm]; Detail: precision, zone
	ClassDateTime              // the same with a space for the T
	ClassDate                  // 2006-01-02
	ClassHTTPDate              // Mon, 02 Jan 2006 15:04:05 GMT (RFC 1123, RFC 850, asctime)
	ClassIPv4                  // 192.0.2.1
	ClassIPv6                  // 2001:db8::1
	ClassIPPort                // 192.0.2.1:8080, [2001:db8::1]:8080
	ClassHost                  // a DNS name with a dot: api.example.com
	ClassHostPort              // api.example.com:8080
	ClassURL                   // scheme://...; Detail: the scheme
	ClassEmail                 // local@domain.example
	ClassText                  // any other string
)

var classNames = [...]string{
	ClassNone: "", ClassEmpty: "empty", ClassInteger: "integer", ClassDecimal: "decimal", ClassUUID: "uuid",
	ClassULID: "ulid", ClassHex: "hex", ClassBase64: "base64", ClassRFC3339: "rfc3339", ClassDateTime: "datetime",
	ClassDate: "date", ClassHTTPDate: "http-date", ClassIPv4: "ipv4", ClassIPv6: "ipv6", ClassIPPort: "ip:port",
	ClassHost: "host", ClassHostPort: "host:port", ClassURL: "url", ClassEmail: "email", ClassText: "text",
}

var typeNames = [...]string{0: "unknown", ShapeNull: "null", ShapeBool: "boolean", ShapeNumber: "number",
	ShapeString: "string", ShapeArray: "array", ShapeObject: "object"}

// Timestamp details: the number of digits of the fraction of seconds
// (bits 0-3, at most 15), the zone (bits 4-5), and whether the fraction
// ends with a digit other than 0 (bit 6), as a formatter that drops
// trailing zeros (Go's RFC3339Nano) writes it.
const (
	precDigits  uint8 = 15
	zoneNone    uint8 = 0 << 4 // local time, no zone
	zoneUTC     uint8 = 1 << 4 // Z
	zoneOffset  uint8 = 2 << 4 // +01:00, -0500
	zoneMask    uint8 = 3 << 4
	fracTrimmed uint8 = 1 << 6
)

// Case details of UUIDs and hex ids (bits 4-5 of a UUID's, whose bits 0-3
// are its version).
const (
	caseLower uint8 = 1
	caseUpper uint8 = 2
)

// URL scheme details.
const (
	schemeOther uint8 = iota
	schemeHTTP
	schemeHTTPS
	schemeWS
	schemeWSS
)

// Character kinds of charMask.
const (
	chDigit      uint16 = 1 << iota
	chHexLower          // a-f
	chHexUpper          // A-F
	chLower             // g-z
	chUpper             // G-Z
	chPlus              // +
	chSlash             // /
	chMinus             // -
	chUnderscore        // _
	chEquals            // =
	chOther             // anything else
)

const (
	base64Chars = chDigit | chHexLower | chHexUpper | chLower | chUpper | chPlus | chSlash | chMinus | chUnderscore | chEquals
	letters     = chHexLower | chHexUpper | chLower | chUpper
)

func charMask(s string) uint16 {
	var m uint16
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			m |= chDigit
		case c >= 'a' && c <= 'f':
			m |= chHexLower
		case c >= 'g' && c <= 'z':
			m |= chLower
		case c >= 'A' && c <= 'F':
			m |= chHexUpper
		case c >= 'G' && c <= 'Z':
			m |= chUpper
		case c == '+':
			m |= chPlus
		case c == '/':
			m |= chSlash
		case c == '-':
			m |= chMinus
		case c == '_':
			m |= chUnderscore
		case c == '=':
			m |= chEquals
		default:
			m |= chOther
		}
	}
	return m
}

// lenClass buckets the length of an id. The bounds sit between the usual
// sizes (8, 16, 20-22, 24-44, 64, 128), so that an id whose generator drops
// leading zeros (a 16-digit hex id printed with 15) keeps its class.
func lenClass(n int) uint8 {
	switch {
	case n == 0:
		return 0
	case n <= 5:
		return 1
	case n <= 11:
		return 2
	case n <= 23:
		return 3
	case n <= 47:
		return 4
	case n <= 95:
		return 5
	case n <= 191:
		return 6
	case n <= 383:
		return 7
	}
	return 8
}

var lenNames = [...]string{"0", "1-5", "6-11", "12-23", "24-47", "48-95", "96-191", "192-383", "384+"}

// ShapeOfJSON returns the shape of one JSON value given as its text (a
// string with its quotes); the zero Shape if it is not one JSON value.
func ShapeOfJSON(raw []byte) Shape {
	d := getDoc()
	defer putDoc(d)
	if d.parse(raw) != nil || len(d.nodes) == 0 {
		return Shape{}
	}
	n := &d.nodes[0]
	return shapeOf(n.kind, d.raw(0), n.esc)
}

// shapeOf classifies a parsed value: kind is its node kind, raw its text.
func shapeOf(kind uint8, raw []byte, esc bool) Shape {
	switch kind {
	case tNull:
		return Shape{Type: ShapeNull}
	case tTrue, tFalse:
		return Shape{Type: ShapeBool}
	case tNumber:
		return Shape{Type: ShapeNumber}
	case tArray:
		return Shape{Type: ShapeArray}
	case tObject:
		return Shape{Type: ShapeObject}
	case tString:
		inner := raw[1 : len(raw)-1]
		if esc {
			return StringShape(unescape(inner))
		}
		return StringShape(string(inner))
	}
	return Shape{}
}

// StringShape classifies a string value.
func StringShape(s string) Shape {
	sh := Shape{Type: ShapeString, chars: charMask(s)}
	sh.Class, sh.Detail = stringClass(s, sh.chars)
	sh.Len = lenClass(len(s))
	return sh
}

func stringClass(s string, chars uint16) (class, detail uint8) {
	if s == "" {
		return ClassEmpty, 0
	}
	if isInteger(s) {
		return ClassInteger, 0
	}
	if isDecimal(s) {
		return ClassDecimal, 0
	}
	if d, ok := uuidDetail(s); ok {
		return ClassUUID, d
	}
	if isULID(s) {
		return ClassULID, 0
	}
	if c, d, ok := timestampClass(s); ok {
		return c, d
	}
	if c, ok := addrClass(s); ok {
		return c, 0
	}
	if d, ok := urlDetail(s); ok {
		return ClassURL, d
	}
	if isEmail(s) {
		return ClassEmail, 0
	}
	if isHost(s) {
		return ClassHost, 0
	}
	if h, p, ok := strings.Cut(s, ":"); ok && isHost(h) && isPort(p) {
		return ClassHostPort, 0
	}
	if len(s) >= 8 && chars&chDigit != 0 {
		switch {
		case chars&^(chDigit|chHexLower) == 0 && chars&chHexLower != 0:
			return ClassHex, caseLower
		case chars&^(chDigit|chHexUpper) == 0 && chars&chHexUpper != 0:
			return ClassHex, caseUpper
		case chars&^base64Chars == 0 && chars&letters != 0 && validPadding(s):
			return ClassBase64, 0
		}
	}
	return ClassText, 0
}

func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDecimal(s string) bool {
	a, b, ok := strings.Cut(s, ".")
	return ok && isInteger(a) && b != "" && isInteger(b) && b[0] != '-'
}

// uuidDetail recognizes 8-4-4-4-12 hex digits; the detail is the version
// nibble and the case of the letters.
func uuidDetail(s string) (uint8, bool) {
	if len(s) != 36 {
		return 0, false
	}
	var cs uint8
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return 0, false
			}
			continue
		}
		switch {
		case isDigit(c):
		case c >= 'a' && c <= 'f':
			cs |= caseLower
		case c >= 'A' && c <= 'F':
			cs |= caseUpper
		default:
			return 0, false
		}
	}
	v, _ := strconv.ParseUint(s[14:15], 16, 8)
	return uint8(v) | cs<<4, true
}

// isULID recognizes 26 Crockford base32 characters (no I, L, O, U), the
// first 0-7, with at least one letter, whose 48-bit timestamp (the first
// ten characters, milliseconds since 1970) falls in 2000-2100. Without
// the timestamp check, one random 26-character upper-case token in about
// 90 passes, so two answers agreeing on "ulid" by chance flagged a
// format_changed now and then (make demo's request ids did); with it, one
// in about 7,000.
func isULID(s string) bool {
	if len(s) != 26 || s[0] < '0' || s[0] > '7' {
		return false
	}
	letter := false
	var ts uint64
	for i := 0; i < len(s); i++ {
		v, ok := crockford(s[i])
		if !ok {
			return false
		}
		if v > 9 {
			letter = true
		}
		if i < 10 {
			ts = ts<<5 | uint64(v)
		}
	}
	return letter && ts >= ulidMinMS && ts < ulidMaxMS
}

// The ULID timestamps taken for real: 2000-01-01 to 2100-01-01 UTC.
const ulidMinMS, ulidMaxMS = 946684800000, 4102444800000

// crockford is the value of a Crockford base32 character, either case.
func crockford(c byte) (uint8, bool) {
	if isDigit(c) {
		return c - '0', true
	}
	c &^= 0x20 // upper case
	if c < 'A' || c > 'Z' || c == 'I' || c == 'L' || c == 'O' || c == 'U' {
		return 0, false
	}
	v := c - 'A' + 10
	// I, L, O and U are skipped: the letters after them move down.
	for _, skipped := range [...]byte{'I', 'L', 'O', 'U'} {
		if c > skipped {
			v--
		}
	}
	return v, true
}

// timestampClass recognizes RFC 3339 timestamps (and the variant with a
// space), dates and HTTP dates.
func timestampClass(s string) (class, detail uint8, ok bool) {
	if len(s) < 10 || !digits(s[0:4]) || s[4] != '-' || !digits(s[5:7]) || s[7] != '-' || !digits(s[8:10]) {
		if len(s) >= 24 && len(s) <= 40 && strings.ContainsRune(s, ':') {
			for _, layout := range []string{time.RFC1123, time.RFC850, time.ANSIC} {
				if _, err := time.Parse(layout, s); err == nil {
					return ClassHTTPDate, 0, true
				}
			}
		}
		return 0, 0, false
	}
	if len(s) == 10 {
		return ClassDate, 0, true
	}
	switch s[10] {
	case 'T', 't':
		class = ClassRFC3339
	case ' ':
		class = ClassDateTime
	default:
		return 0, 0, false
	}
	t := s[11:]
	if len(t) < 8 || !digits(t[0:2]) || t[2] != ':' || !digits(t[3:5]) || t[5] != ':' || !digits(t[6:8]) {
		return 0, 0, false
	}
	t = t[8:]
	var prec uint8
	if len(t) > 0 && (t[0] == '.' || t[0] == ',') {
		n := 1
		for n < len(t) && isDigit(t[n]) {
			n++
		}
		if n == 1 {
			return 0, 0, false
		}
		prec = uint8(min(n-1, int(precDigits)))
		if t[n-1] != '0' {
			prec |= fracTrimmed
		}
		t = t[n:]
	}
	zone := zoneNone
	switch {
	case t == "":
	case t == "Z" || t == "z":
		zone = zoneUTC
	case (t[0] == '+' || t[0] == '-') && (len(t) == 6 && digits(t[1:3]) && t[3] == ':' && digits(t[4:6]) ||
		len(t) == 5 && digits(t[1:5]) || len(t) == 3 && digits(t[1:3])):
		zone = zoneOffset
	default:
		return 0, 0, false
	}
	return class, prec | zone, true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// addrClass recognizes IP addresses, with or without a port.
func addrClass(s string) (uint8, bool) {
	if !strings.ContainsAny(s, ".:") || len(s) > 64 {
		return 0, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Is4() {
			return ClassIPv4, true
		}
		return ClassIPv6, true
	}
	if _, err := netip.ParseAddrPort(s); err == nil {
		return ClassIPPort, true
	}
	return 0, false
}

func isPort(p string) bool {
	if len(p) == 0 || len(p) > 5 || !digits(p) {
		return false
	}
	n, _ := strconv.Atoi(p)
	return n <= 65535
}

// urlDetail recognizes scheme://rest, the scheme being letters, digits,
// "+", "-" or "." after a letter, and the rest without spaces.
func urlDetail(s string) (uint8, bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" || rest == "" || strings.ContainsAny(rest, " \t\r\n") {
		return 0, false
	}
	for i := 0; i < len(scheme); i++ {
		c := scheme[i] | 0x20
		if !(c >= 'a' && c <= 'z') && (i == 0 || !isDigit(scheme[i]) && !strings.ContainsRune("+-.", rune(scheme[i]))) {
			return 0, false
		}
	}
	switch strings.ToLower(scheme) {
	case "http":
		return schemeHTTP, true
	case "https":
		return schemeHTTPS, true
	case "ws":
		return schemeWS, true
	case "wss":
		return schemeWSS, true
	}
	return schemeOther, true
}

func isEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && len(local) <= 64 && !strings.ContainsAny(local, " \t\r\n<>()[],;:\"@") && isHost(domain)
}

// isHost recognizes a DNS name of at least two labels whose last label is
// not a number: letters, digits and "-", at most 253 bytes.
func isHost(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	labels := 0
	last := ""
	for l := range strings.SplitSeq(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i] | 0x20
			if !(c >= 'a' && c <= 'z') && !isDigit(l[i]) && l[i] != '-' {
				return false
			}
		}
		labels++
		last = l
	}
	return labels >= 2 && !digits(last)
}

// validPadding accepts "=" only at the end, at most two.
func validPadding(s string) bool {
	t := strings.TrimRight(s, "=")
	return len(s)-len(t) <= 2 && !strings.Contains(t, "=")
}

// Fits reports whether a value of shape v could come from the generator
// that produced a value of shape old: the same type and class and the
// details a generator keeps, where an id's characters may be any of its
// alphabet (a hex id with no letter, a base64 id with no digit fit), an
// integer string fits a decimal one, and a timestamp's fraction may be
// shorter when it does not end with 0 (see below). Any non-empty string
// fits text. The zero Shape fits and is fitted by everything (nothing is
// known).
func Fits(v, old Shape) bool {
	if v.Type == 0 || old.Type == 0 {
		return true
	}
	if v.Type != old.Type {
		return false
	}
	if v.Type != ShapeString {
		return true
	}
	switch old.Class {
	case ClassText:
		return v.Class != ClassEmpty
	case ClassHex:
		alphabet := chDigit | chHexLower
		if old.Detail == caseUpper {
			alphabet = chDigit | chHexUpper
		}
		return v.Class != ClassEmpty && v.chars&^alphabet == 0 && v.Len == old.Len
	case ClassBase64:
		return v.Class != ClassEmpty && v.chars&^base64Chars == 0 && v.Len == old.Len
	case ClassDecimal:
		// A formatter that drops trailing zeros writes 2.0 as "2".
		return v.Class == ClassDecimal || v.Class == ClassInteger
	case ClassRFC3339, ClassDateTime:
		// The zone must be the same, and the precision; but a formatter
		// that drops trailing zeros (Go's RFC3339Nano writes .1234567
		// for .123456700) writes fewer digits, never ending with 0, so
		// the shorter of two fractions that does not end with 0 may be
		// such a one. A fraction that appears or disappears, or a shorter
		// one ending with 0, is another format.
		if v.Class != old.Class || v.Detail&zoneMask != old.Detail&zoneMask {
			return false
		}
		k, m := v.Detail&precDigits, old.Detail&precDigits
		switch {
		case k == m:
			return true
		case k == 0 || m == 0:
			return false
		case k < m:
			return v.Detail&fracTrimmed != 0
		}
		return old.Detail&fracTrimmed != 0
	}
	return v.Class == old.Class && v.Detail == old.Detail
}

// String names the shape: "number", "string/ip:port",
// "string/rfc3339 (ms, Z)", "string/uuid (v4, lower)",
// "string/hex (lower, 12-23 chars)".
func (s Shape) String() string {
	if int(s.Type) >= len(typeNames) {
		return "unknown"
	}
	if s.Type != ShapeString || int(s.Class) >= len(classNames) {
		return typeNames[s.Type]
	}
	name := "string/" + classNames[s.Class]
	var d []string
	switch s.Class {
	case ClassRFC3339, ClassDateTime:
		switch n := s.Detail & precDigits; n {
		case 0, 3, 6, 9:
			d = append(d, map[uint8]string{0: "s", 3: "ms", 6: "µs", 9: "ns"}[n])
		default:
			d = append(d, strconv.Itoa(int(n))+" digits")
		}
		switch s.Detail & zoneMask {
		case zoneNone:
			d = append(d, "no zone")
		case zoneUTC:
			d = append(d, "Z")
		default:
			d = append(d, "offset")
		}
	case ClassUUID:
		d = append(d, "v"+strconv.Itoa(int(s.Detail&15)))
		d = append(d, caseName(s.Detail>>4))
	case ClassHex:
		d = append(d, caseName(s.Detail), lenNames[s.Len]+" chars")
	case ClassBase64:
		d = append(d, lenNames[s.Len]+" chars")
	case ClassURL:
		d = append(d, [...]string{"other scheme", "http", "https", "ws", "wss"}[s.Detail%5])
	}
	if len(d) > 0 {
		name += " (" + strings.Join(d, ", ") + ")"
	}
	return name
}

func caseName(c uint8) string {
	switch c {
	case caseLower:
		return "lower"
	case caseUpper:
		return "upper"
	case caseLower | caseUpper:
		return "mixed"
	}
	return "digits"
}
