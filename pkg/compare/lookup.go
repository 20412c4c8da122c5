package compare

import (
	"errors"
	"fmt"
)

// ErrNoValue is wrapped by Lookup when the body has no value at the path.
var ErrNoValue = errors.New("no value at the path")

// Lookup returns the JSON text of the value at a diff path ($.items[3].price,
// $["a b"], $[2].field in a JSON sequence) of a body of the given media
// type (MediaType): a JSON sequence (IsJSONSeq) is read as the array of its
// texts, as Pair compares it; any other body as one JSON text. It is how a
// stored example shows the before and after of one diff. The error wraps
// ErrNoValue when the path is not in the body, and says why when the body
// or the path cannot be read (a path with wildcards is refused).
func Lookup(mediaType string, body []byte, path string) ([]byte, error) {
	steps, err := parsePattern(path)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", path, err)
	}
	for _, s := range steps {
		if s.any || s.desc {
			return nil, fmt.Errorf("path %q: wildcards do not name one value", path)
		}
	}
	d := getDoc()
	defer putDoc(d)
	if IsJSONSeq(mediaType) {
		err = d.parseSeq(body)
	} else {
		err = d.parse(body)
	}
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	i := int32(0)
	for _, s := range steps {
		n := &d.nodes[i]
		found := int32(-1)
		switch {
		case s.isIdx && n.kind == tArray && s.idx < n.n:
			c := i + 1
			for k := int32(0); k < s.idx; k++ {
				c = d.nodes[c].next
			}
			found = c
		case !s.isIdx && n.kind == tObject:
			// The last member of a name wins, as in encoding/json.
			for c, k := i+1, int32(0); k < n.n; c, k = d.nodes[c].next, k+1 {
				if d.key(c) == s.name {
					found = c
				}
			}
		}
		if found < 0 {
			return nil, fmt.Errorf("%w %s", ErrNoValue, path)
		}
		i = found
	}
	return append([]byte(nil), d.raw(i)...), nil
}
