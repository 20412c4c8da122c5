package envelope

import "io"

// Capture is an io.Writer that keeps the first Limit bytes written to it and
// counts the rest, so a body can be streamed through and sampled without
// being buffered whole.
type Capture struct {
	Limit int
	buf   []byte
	size  int64
}

// Write never fails: it keeps what fits under Limit and counts everything.
func (c *Capture) Write(p []byte) (int, error) {
	c.size += int64(len(p))
	if room := c.Limit - len(c.buf); room > 0 {
		if len(p) > room {
			c.buf = append(c.buf, p[:room]...)
		} else {
			c.buf = append(c.buf, p...)
		}
	}
	return len(p), nil
}

// Bytes returns the captured prefix.
func (c *Capture) Bytes() []byte { return c.buf }

// Size returns the number of bytes written, captured or not.
func (c *Capture) Size() int64 { return c.size }

// Truncated reports whether more was written than captured.
func (c *Capture) Truncated() bool { return c.size > int64(len(c.buf)) }

// Reset empties the capture, keeping its buffer for reuse.
func (c *Capture) Reset() { c.buf = c.buf[:0]; c.size = 0 }

// ReadBody reads r to the end, keeping at most limit bytes; it reports the
// full size and whether the result was truncated.
func ReadBody(r io.Reader, limit int) (body []byte, size int64, truncated bool, err error) {
	c := Capture{Limit: limit}
	_, err = io.Copy(&c, r)
	return c.Bytes(), c.Size(), c.Truncated(), err
}
