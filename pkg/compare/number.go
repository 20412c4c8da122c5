package compare

import (
	"bytes"
	"math"
	"strconv"
	"strings"
)

// Numbers are compared by exact decimal value, never through float64, so
// that 1, 1.0 and 1e0 are equal and 12345678901234567890 and
// 12345678901234567891 are not: a literal is read in place as its digits
// and a power of ten (decimal), without allocating. float64 is used only
// under a numeric tolerance, where closeness, not identity, is asked.

// numEqual reports whether two JSON number literals have the same exact
// decimal value.
func numEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	x, okx := parseDecimal(a)
	y, oky := parseDecimal(b)
	if !okx || !oky {
		return false
	}
	if x.zero || y.zero {
		return x.zero && y.zero
	}
	if x.neg != y.neg || x.exp != y.exp || x.ndig != y.ndig {
		return false
	}
	for k := 0; k < x.ndig; k++ {
		if x.digit(k) != y.digit(k) {
			return false
		}
	}
	return true
}

// decimal is a number literal as 0.d1d2...dn × 10^exp with d1 and dn
// non-zero; the digits stay in the literal.
type decimal struct {
	neg, zero bool
	ip, fp    []byte // integer and fraction digits of the literal
	first     int    // index of d1 in ip+fp
	ndig      int
	exp       int64
}

func (d *decimal) digit(k int) byte {
	i := d.first + k
	if i < len(d.ip) {
		return d.ip[i]
	}
	return d.fp[i-len(d.ip)]
}

// parseDecimal reads a literal the parser validated. It fails only for an
// exponent too long to hold exactly.
func parseDecimal(s []byte) (decimal, bool) {
	var d decimal
	i := 0
	if i < len(s) && s[i] == '-' {
		d.neg = true
		i++
	}
	j := i
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	d.ip = s[i:j]
	if j < len(s) && s[j] == '.' {
		k := j + 1
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		d.fp = s[j+1 : k]
		j = k
	}
	var e int64
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		j++
		eneg := false
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			eneg = s[j] == '-'
			j++
		}
		for j < len(s) && s[j] == '0' {
			j++
		}
		if len(s)-j > 18 {
			return d, false
		}
		for ; j < len(s); j++ {
			e = e*10 + int64(s[j]-'0')
		}
		if eneg {
			e = -e
		}
	}
	total := len(d.ip) + len(d.fp)
	d.first = 0
	for d.first < total && d.digitAt(d.first) == '0' {
		d.first++
	}
	if d.first == total {
		d.zero = true
		return d, true
	}
	last := total - 1
	for d.digitAt(last) == '0' {
		last--
	}
	d.ndig = last - d.first + 1
	d.exp = int64(len(d.ip)) - int64(d.first) + e
	return d, true
}

func (d *decimal) digitAt(i int) byte {
	if i < len(d.ip) {
		return d.ip[i]
	}
	return d.fp[i-len(d.ip)]
}

// canonicalNumber is a text form equal for equal decimal values.
func canonicalNumber(raw []byte) string {
	x, ok := parseDecimal(raw)
	if !ok {
		return "raw:" + string(raw)
	}
	if x.zero {
		return "0"
	}
	var b strings.Builder
	if x.neg {
		b.WriteByte('-')
	}
	for k := 0; k < x.ndig; k++ {
		b.WriteByte(x.digit(k))
	}
	b.WriteByte('e')
	b.WriteString(strconv.FormatInt(x.exp, 10))
	return b.String()
}

// near reports whether two numbers are equal within the numeric tolerance.
func (w *walker) near(a, b []byte) bool {
	if !w.tol {
		return false
	}
	x, err1 := strconv.ParseFloat(string(a), 64)
	y, err2 := strconv.ParseFloat(string(b), 64)
	if err1 != nil || err2 != nil || math.IsInf(x, 0) || math.IsInf(y, 0) {
		return false
	}
	d := math.Abs(x - y)
	return d <= w.abs || d <= w.rel*math.Max(math.Abs(x), math.Abs(y))
}
