package gateway

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"time"
)

// alive reports whether an idle pooled connection is still open, without blocking and without
// consuming anything: a peek that finds the upstream's FIN or RST means the connection was
// closed while idle, and a request written to it would be lost in flight.
func alive(c net.Conn) bool {
	tc, isTLS := c.(*tls.Conn)
	raw := c
	if isTLS {
		raw = tc.NetConn()
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var perr error
	var buf [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait
	}); err != nil {
		return false
	}
	switch {
	case errors.Is(perr, syscall.EAGAIN):
		return true // nothing to read: open
	case perr != nil || n == 0:
		return false // reset, or closed
	case !isTLS:
		return false // an HTTP upstream spoke unasked (a 408 before closing, say)
	}
	// TLS 1.3 servers send session tickets after the handshake, and a closing server sends
	// close_notify first: read through TLS briefly to tell the two apart.
	_ = tc.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err = tc.Read(buf[:])
	_ = tc.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
