//go:build !unix

package h1

// alive cannot peek here: the request goes out, and a connection the
// server closed while idle fails it (not retried unless it may be sent
// twice).
func (c *conn) alive() bool { return true }
