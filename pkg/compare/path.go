package compare

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on rule paths, so a launch's rules cannot make every node of every
// pair expensive.
const (
	MaxRulePathLen   = 1024 // bytes in one rule path
	MaxRulePathSteps = 64   // steps in one rule path
	MaxRuleEntries   = 256  // entries in one rules list or map
	MaxHeaderNameLen = 256  // bytes in one header name of a rules list
)

// step is one step of a rule path: a member name, an array index, or a
// wildcard, optionally preceded by ".." (any number of segments first).
type step struct {
	desc  bool
	any   bool
	isIdx bool
	idx   int32
	name  string
}

// parsePattern parses a rule path. The syntax is the one of Diff paths
// plus wildcards: "$", then steps ".name", `["any name"]` or ['any name'],
// "[3]", ".*" or "[*]", each optionally written with ".." instead of "."
// (or ".." before a bracket) to match at any depth below.
func parsePattern(s string) ([]step, error) {
	if len(s) > MaxRulePathLen {
		return nil, fmt.Errorf("longer than %d bytes", MaxRulePathLen)
	}
	if !strings.HasPrefix(s, "$") {
		return nil, fmt.Errorf(`must start with "$"`)
	}
	var steps []step
	i := 1
	for i < len(s) {
		if len(steps) == MaxRulePathSteps {
			return nil, fmt.Errorf("more than %d steps", MaxRulePathSteps)
		}
		var st step
		switch s[i] {
		case '.':
			i++
			if i < len(s) && s[i] == '.' {
				st.desc = true
				i++
			}
			if i >= len(s) {
				return nil, fmt.Errorf("a name or * must follow %q at offset %d", s[i-1], i)
			}
			switch {
			case s[i] == '[' && st.desc:
				// "..[...]": handled by the bracket case below.
			case s[i] == '*':
				st.any = true
				i++
				steps = append(steps, st)
				continue
			default:
				j := i
				for j < len(s) && isIdentByte(s[j], j == i) {
					j++
				}
				if j == i {
					return nil, fmt.Errorf(`unexpected %s at offset %d (names other than [A-Za-z_][A-Za-z0-9_]* are written ["name"])`, quoteByte(s, i), i)
				}
				st.name = s[i:j]
				i = j
				steps = append(steps, st)
				continue
			}
			fallthrough
		case '[':
			j, err := parseBracket(s, i, &st)
			if err != nil {
				return nil, err
			}
			i = j
			steps = append(steps, st)
		default:
			return nil, fmt.Errorf(`unexpected %s at offset %d (expected ".", ".." or "[")`, quoteByte(s, i), i)
		}
	}
	return steps, nil
}

func quoteByte(s string, i int) string {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return strconv.QuoteRune(r)
}

func isIdentByte(c byte, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

// parseBracket parses "[*]", "[12]", `["name"]` or "['name']" at s[i] == '['.
func parseBracket(s string, i int, st *step) (int, error) {
	i++ // '['
	if i >= len(s) {
		return 0, fmt.Errorf(`unexpected end after "[" at offset %d`, i)
	}
	switch c := s[i]; {
	case c == '*':
		st.any = true
		i++
	case c >= '0' && c <= '9':
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j-i > 9 {
			return 0, fmt.Errorf("index at offset %d is too large", i)
		}
		n, _ := strconv.Atoi(s[i:j])
		st.isIdx, st.idx = true, int32(n)
		i = j
	case c == '"' || c == '\'':
		name, j, err := parseQuoted(s, i)
		if err != nil {
			return 0, err
		}
		st.name = name
		i = j
	default:
		return 0, fmt.Errorf(`unexpected %s at offset %d (expected *, an index or a quoted name after "[")`, quoteByte(s, i), i)
	}
	if i >= len(s) || s[i] != ']' {
		return 0, fmt.Errorf(`expected "]" at offset %d`, i)
	}
	return i + 1, nil
}

// parseQuoted parses a quoted name at s[i]: with double quotes it is a JSON
// string; with single quotes, backslash escapes only \' and \\.
func parseQuoted(s string, i int) (string, int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			lit := s[i : j+1]
			if q == '"' {
				if _, _, err := scanString([]byte(lit), 0); err != nil {
					return "", 0, fmt.Errorf("invalid quoted name at offset %d: %v", i, err)
				}
				return unescape([]byte(lit[1 : len(lit)-1])), j + 1, nil
			}
			var b strings.Builder
			for k := 1; k < len(lit)-1; k++ {
				if lit[k] == '\\' {
					k++
					if lit[k] != '\'' && lit[k] != '\\' {
						return "", 0, fmt.Errorf(`invalid escape \%c at offset %d (only \' and \\ in single quotes)`, lit[k], i+k)
					}
				}
				b.WriteByte(lit[k])
			}
			return b.String(), j + 1, nil
		}
	}
	return "", 0, fmt.Errorf("unterminated quoted name at offset %d", i)
}

// pseg is one segment of a concrete path, as rule paths see it.
type pseg struct {
	key     []byte // member name, decoded
	idx     int32
	isIdx   bool
	generic bool // an element of an array matched as a multiset or by key: only wildcards match it
}

func (st *step) matches(sg *pseg) bool {
	switch {
	case st.any:
		return true
	case st.isIdx:
		return sg.isIdx && !sg.generic && sg.idx == st.idx
	default:
		return !sg.isIdx && string(sg.key) == st.name
	}
}

// Rule groups a rule path belongs to.
const (
	groupIgnore = iota
	groupUnordered
	groupKeyed
)

// npos is one position of the automaton: the step still to match, or an
// accepting position.
type npos struct {
	st     step
	accept bool
	group  int
	key    string // for accepting positions of the keyed group
}

// matcher runs every rule path at once over the path of the node being
// compared, as a set of positions (an NFA) pushed and popped with the walk.
// The state of a node depends only on its path, so a rule is checked in
// time proportional to the rules, not to the depth.
type matcher struct {
	words     int
	pos       []npos
	start     []uint64
	acc       [3][]uint64 // accepting positions of each group
	allUnord  bool        // "$..*" in unordered_arrays: every array, the root included
	rootState []uint64    // state of "$"
}

func (m *matcher) add(steps []step, group int, key string) {
	for _, st := range steps {
		m.pos = append(m.pos, npos{st: st})
	}
	m.pos = append(m.pos, npos{accept: true, group: group, key: key})
}

// build sizes the bitsets once every path was added; start marks the first
// position of each path.
func (m *matcher) build(starts []int) {
	m.words = (len(m.pos) + 63) / 64
	m.start = make([]uint64, m.words)
	for g := range m.acc {
		m.acc[g] = make([]uint64, m.words)
	}
	for _, p := range starts {
		m.start[p>>6] |= 1 << (p & 63)
	}
	for p, np := range m.pos {
		if np.accept {
			m.acc[np.group][p>>6] |= 1 << (p & 63)
		}
	}
	m.rootState = m.start
}

// next computes in dst the state after one more segment; it reports
// whether any position is active.
func (m *matcher) next(dst, src []uint64, sg *pseg) bool {
	clear(dst)
	any := false
	for w, word := range src {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &= word - 1
			p := w<<6 | b
			np := &m.pos[p]
			if np.accept {
				continue
			}
			if np.st.desc {
				dst[w] |= 1 << b
				any = true
			}
			if np.st.matches(sg) {
				q := p + 1
				dst[q>>6] |= 1 << (q & 63)
				any = true
			}
		}
	}
	return any
}

func (m *matcher) in(state []uint64, group int) bool {
	for w, word := range state {
		if word&m.acc[group][w] != 0 {
			return true
		}
	}
	return false
}

// keyOf returns the key field of the first keyed rule accepting state.
func (m *matcher) keyOf(state []uint64) (string, bool) {
	for w, word := range state {
		word &= m.acc[groupKeyed][w]
		if word != 0 {
			return m.pos[w<<6|bits.TrailingZeros64(word)].key, true
		}
	}
	return "", false
}

// rstate is the stack of rule states along the current path. A state is an
// offset into ss; -1 is the empty state (no rule can match at or below).
type rstate struct {
	m  *matcher
	ss []uint64
}

const noState = -1

func (r *rstate) root() int32 {
	if r.m == nil {
		return noState
	}
	off := len(r.ss)
	r.ss = append(r.ss, r.m.start...)
	return int32(off)
}

// enter pushes the state of a child of the node in state cur.
func (r *rstate) enter(cur int32, sg pseg) int32 {
	if cur < 0 {
		return noState
	}
	n := r.m.words
	off := len(r.ss)
	r.ss = append(r.ss, make([]uint64, n)...)
	if !r.m.next(r.ss[off:off+n], r.ss[cur:int(cur)+n], &sg) {
		r.ss = r.ss[:off]
		return noState
	}
	return int32(off)
}

// leave pops a state pushed by enter or root; states are popped in the
// reverse order of their pushing.
func (r *rstate) leave(s int32) {
	if s >= 0 {
		r.ss = r.ss[:s]
	}
}

func (r *rstate) is(s int32, group int) bool {
	return s >= 0 && r.m.in(r.ss[s:int(s)+r.m.words], group)
}

func (r *rstate) ignored(s int32) bool { return r.is(s, groupIgnore) }

func (r *rstate) unordered(s int32) bool {
	return (r.m != nil && r.m.allUnord) || r.is(s, groupUnordered)
}

func (r *rstate) keyed(s int32) (string, bool) {
	if s < 0 {
		return "", false
	}
	return r.m.keyOf(r.ss[s : int(s)+r.m.words])
}

// Generalize replaces every array index of a Diff path with [*]:
// $.items[3].price becomes $.items[*].price. Bracket-quoted names are kept
// as they are; anything that is not a body path ("status",
// "header.Content-Type") is returned unchanged.
func Generalize(path string) string {
	if !strings.HasPrefix(path, "$") || !strings.Contains(path, "[") {
		return path
	}
	var b strings.Builder
	b.Grow(len(path))
	b.WriteByte('$')
	i := 1
	for i < len(path) {
		c := path[i]
		if c != '[' {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(path) && path[i+1] == '"' {
			// A quoted name: copy it whole, escapes included.
			j := i + 2
			for j < len(path) && path[j] != '"' {
				if path[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+2, len(path)) // closing quote and ']'
			b.WriteString(path[i:j])
			i = j
			continue
		}
		j := i + 1
		for j < len(path) && path[j] >= '0' && path[j] <= '9' {
			j++
		}
		if j > i+1 && j < len(path) && path[j] == ']' {
			b.WriteString("[*]")
			i = j + 1
			continue
		}
		b.WriteByte(c)
		i++
	}
	return b.String()
}
