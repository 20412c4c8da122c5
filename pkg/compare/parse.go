package compare

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// A parsed JSON document is a flat slice of nodes in document order: a
// container's children follow it, and every node knows the index just past
// its subtree (next). One slice per document, no per-value allocation, and
// no recursion while parsing, so deep nesting cannot exhaust the stack.
// The nodes are built from the tokens of the package's one JSON scanner
// (scan.go), which also validates.

// jsonType folds true and false into one type, for type_changed.
func jsonType(kind uint8) uint8 {
	if kind == tTrue {
		return tFalse
	}
	return kind
}

// node is a token placed in the tree. A container's span is its whole
// text, from its opening bracket to its closing one.
type node struct {
	token
	next int32 // index of the first node after this subtree
	n    int32 // number of children
}

type doc struct {
	src   []byte
	nodes []node
	stack []int32 // the open containers' nodes
	sc    scanner
}

var errTooLarge = errors.New("body too large to parse")

var docPool = sync.Pool{New: func() any { return new(doc) }}

func getDoc() *doc { return docPool.Get().(*doc) }

// putDoc returns a document to the pool, dropping the source and any
// unusually large buffers so the pool does not pin big bodies.
func putDoc(d *doc) {
	d.src = nil
	if cap(d.nodes) > 1<<18 {
		d.nodes = nil
	}
	if cap(d.stack) > 1<<12 {
		d.stack = nil
	}
	d.sc.reset(nil)
	if cap(d.sc.stack) > 1<<12 {
		d.sc.stack = nil
	}
	docPool.Put(d)
}

func (d *doc) raw(i int32) []byte { n := &d.nodes[i]; return d.src[n.start:n.end] }

func (d *doc) keyRaw(i int32) []byte { n := &d.nodes[i]; return d.src[n.kstart:n.kend] }

// parse parses src strictly (RFC 8259), replacing the document's contents.
func (d *doc) parse(src []byte) error {
	if len(src) >= math.MaxInt32 {
		return errTooLarge
	}
	d.src = src
	d.nodes = d.nodes[:0]
	d.stack = d.stack[:0]
	if want := len(src)/16 + 4; cap(d.nodes) < want {
		d.nodes = make([]node, 0, want)
	}
	d.sc.reset(src)
	for {
		t, err := d.sc.next()
		if err != nil {
			return err
		}
		switch t.kind {
		case tEnd:
			top := d.stack[len(d.stack)-1]
			d.nodes[top].end = t.end
			d.nodes[top].next = int32(len(d.nodes))
			d.stack = d.stack[:len(d.stack)-1]
			continue
		case tDone:
			return nil
		}
		idx := int32(len(d.nodes))
		if len(d.stack) > 0 {
			d.nodes[d.stack[len(d.stack)-1]].n++
		}
		// Field by field: a copy of *t in wide moves would read back the
		// scanner's narrow stores before they land (a store-forwarding
		// stall on every token, 6% of the parse).
		d.nodes = append(d.nodes, node{token: token{kind: t.kind, esc: t.esc, kesc: t.kesc,
			start: t.start, end: t.end, kstart: t.kstart, kend: t.kend}, next: idx + 1})
		if t.kind == tArray || t.kind == tObject {
			d.stack = append(d.stack, idx) // end and next are set at its tEnd
		}
	}
}

// members maps the member names of object i to their value nodes.
func (d *doc) members(i int32) map[string]int32 {
	m := make(map[string]int32, d.nodes[i].n)
	for c, k := i+1, int32(0); k < d.nodes[i].n; c, k = d.nodes[c].next, k+1 {
		m[d.key(c)] = c
	}
	return m
}

// key returns the unescaped member name of node i.
func (d *doc) key(i int32) string {
	return string(d.keyBytes(i))
}

// keyBytes returns the unescaped member name of node i, without copying
// when it has no escapes.
func (d *doc) keyBytes(i int32) []byte {
	n := &d.nodes[i]
	if !n.kesc {
		return d.src[n.kstart:n.kend]
	}
	return []byte(unescape(d.src[n.kstart:n.kend]))
}

// recordSep is RS, which starts each text of an RFC 7464 JSON text
// sequence.
const recordSep = 0x1e

// seqRecords calls fn with the span src[start:end] of each record of a
// sequence of JSON texts and the number of its first line: the texts after
// each RS when the body holds one (RFC 7464, where a text may span lines),
// else its lines (NDJSON, JSON Lines). Records are trimmed of JSON
// whitespace; empty ones are skipped. It stops when fn returns false.
func seqRecords(src []byte, fn func(start, end, line int) bool) {
	sep := byte('\n')
	if bytes.IndexByte(src, recordSep) >= 0 {
		sep = recordSep
	}
	line := 1
	for off := 0; off < len(src); {
		end := bytes.IndexByte(src[off:], sep)
		if end < 0 {
			end = len(src)
		} else {
			end += off
		}
		rec := src[off:end]
		first := line + leadingLines(rec)
		line += bytes.Count(rec, []byte{'\n'})
		if sep == '\n' {
			line++
		}
		lead := len(rec) - len(bytes.TrimLeft(rec, " \t\r\n"))
		trimmed := bytes.TrimRight(rec[lead:], " \t\r\n")
		if len(trimmed) > 0 && !fn(off+lead, off+lead+len(trimmed), first) {
			return
		}
		off = end + 1
	}
}

// leadingLines counts the line feeds before the first non-whitespace byte.
func leadingLines(b []byte) int {
	n := 0
	for _, c := range b {
		switch c {
		case '\n':
			n++
		case ' ', '\t', '\r':
		default:
			return n
		}
	}
	return n
}

// parseSeq parses a sequence of JSON texts (see seqRecords) as one array
// of them, so that the walker compares them element by element with paths
// $[3].field. Each record must be exactly one JSON text; the error names
// the line of the first one that is not.
func (d *doc) parseSeq(src []byte) error {
	if len(src) >= math.MaxInt32-2 {
		return errTooLarge
	}
	type rec struct{ start, end, line int }
	var recs []rec
	buf := make([]byte, 0, len(src)+2)
	buf = append(buf, '[')
	seqRecords(src, func(start, end, line int) bool {
		if len(recs) > 0 {
			buf = append(buf, ',')
		}
		recs = append(recs, rec{len(buf), len(buf) + end - start, line})
		buf = append(buf, src[start:end]...)
		return true
	})
	buf = append(buf, ']')
	lineAt := func(off int) int {
		i, _ := slices.BinarySearchFunc(recs, off, func(r rec, off int) int { return cmp.Compare(r.end, off) })
		return recs[min(i, len(recs)-1)].line
	}
	if err := d.parse(buf); err != nil {
		var se *syntaxError
		if errors.As(err, &se) && len(recs) > 0 {
			return fmt.Errorf("line %d: %s", lineAt(se.off), se.msg)
		}
		return err
	}
	// A record that is not one text (`[1` then `2],3`) can still make the
	// whole an array: each element must be its record.
	c := int32(1)
	for _, r := range recs {
		if c >= int32(len(d.nodes)) || int(d.nodes[c].start) != r.start || int(d.nodes[c].end) != r.end {
			return fmt.Errorf("line %d: not exactly one JSON text", r.line)
		}
		c = d.nodes[c].next
	}
	if int(d.nodes[0].n) != len(recs) {
		return fmt.Errorf("line %d: not exactly one JSON text", recs[len(recs)-1].line)
	}
	return nil
}
