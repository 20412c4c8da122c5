//go:build unix

package h1

import (
	"errors"
	"syscall"
)

// alive says whether an idle connection can still carry a request: the
// server has neither closed it (a peek reads end of file) nor sent
// anything unasked. It costs one non-blocking system call, paid only
// before a request that may not be sent twice: http.Transport learns the
// same from the reader goroutine it keeps on every idle connection.
func (c *conn) alive() bool {
	sc, ok := c.c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	alive := true
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		// Open and quiet: EAGAIN. Closed: 0 bytes. Data: unasked.
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
		return true // never wait for readiness
	})
	return alive && err == nil
}
