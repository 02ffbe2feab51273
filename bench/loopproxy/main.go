//go:build linux

// Command loopproxy is make bench-gateway's yardstick for the other design a Go data plane can
// take: nginx's, event loops over epoll with no goroutine per connection. Each loop is one OS
// thread with its own SO_REUSEPORT listener; a client connection is paired with its own
// keep-alive upstream connection; requests and responses are framed by Content-Length (or have
// none) and passed on as bytes. It is a prototype to measure, not a proxy to deploy: no chunked
// bodies, no header rewriting, no pipelining guarantees beyond in-order forwarding.
// With -reject it answers every request 429 itself, with no work at all: the ceiling of the
// rejections per second here. -wait park and
// -raw are the two variants measured before the gateway's engine took them (docs/performance.md).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9016", "listen address")
	upstream := flag.String("upstream", "127.0.0.1:9001", "upstream host:port")
	loops := flag.Int("loops", runtime.NumCPU(), "event loops (threads)")
	reject := flag.Bool("reject", false, "answer every request 429, without the upstream")
	headers := flag.Bool("headers", false, "add the headers the gateway adds upstream (X-Forwarded-*, X-Request-Id, X-User-*)")
	wait := flag.String("wait", "block", "how a loop waits for events: block (in epoll_wait on a locked thread) or park (in the Go runtime's poller)")
	raw := flag.Bool("raw", false, "non-blocking reads, writes and epoll_wait(0) as raw system calls, which the Go scheduler does not see")
	flag.Parse()
	if *wait != "block" && *wait != "park" {
		log.Fatalf("-wait %q: want block or park", *wait)
	}
	la, err := netip.ParseAddrPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	ua, err := netip.ParseAddrPort(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	errc := make(chan error, *loops)
	for range *loops {
		l, err := newLoop(la, ua, *reject)
		l.headers, l.raw = *headers, *raw
		if err != nil {
			log.Fatal(err)
		}
		if *wait == "park" {
			go func() { errc <- l.runParked() }()
		} else {
			go func() { errc <- l.run() }()
		}
	}
	log.Fatal(<-errc)
}

type conn struct {
	fd    int
	peer  *conn  // the client's upstream connection, or the upstream's client
	in    []byte // bytes read, not yet passed on
	out   []byte // bytes to write, not yet written
	isUp  bool
	inOut bool // registered for EPOLLOUT
}

type loop struct {
	ep, ln  int
	up      unix.SockaddrInet4
	reject  bool
	conns   map[int]*conn
	buf     []byte
	events  []unix.EpollEvent
	rejects []byte
	headers bool
	raw     bool
	scratch []byte
}

func newLoop(la, ua netip.AddrPort, reject bool) (*loop, error) {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return nil, err
	}
	if err := unix.Bind(ln, &unix.SockaddrInet4{Port: int(la.Port()), Addr: la.Addr().As4()}); err != nil {
		return nil, err
	}
	if err := unix.Listen(ln, 4096); err != nil {
		return nil, err
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ln, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ln)}); err != nil {
		return nil, err
	}
	body := `{"type":"about:blank","title":"Too Many Requests","status":429}`
	return &loop{ep: ep, ln: ln, up: unix.SockaddrInet4{Port: int(ua.Port()), Addr: ua.Addr().As4()},
		reject: reject, conns: map[int]*conn{}, buf: make([]byte, 64<<10), events: make([]unix.EpollEvent, 256),
		rejects: []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + body)}, nil
}

func (l *loop) run() error {
	runtime.LockOSThread()
	for {
		n, err := l.epollWait(-1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		l.dispatch(n)
	}
}

func (l *loop) dispatch(n int) {
	for i := range n {
		ev := l.events[i]
		fd := int(ev.Fd)
		if fd == l.ln {
			l.accept()
			continue
		}
		c := l.conns[fd]
		if c == nil {
			continue
		}
		if ev.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.read(c)
		}
		if ev.Events&unix.EPOLLOUT != 0 && l.conns[fd] == c {
			l.flush(c)
		}
	}
}

// runParked waits in the Go runtime's poller, where the loop's epoll descriptor is registered
// as any socket is, instead of blocking in epoll_wait on a locked thread. No thread then sits in
// a system call holding a P, so the runtime's sysmon does not keep retaking Ps and waking every
// 20 us; the price is one epoll_wait(0) more per wake.
func (l *loop) runParked() error {
	if err := unix.SetNonblock(l.ep, true); err != nil {
		return err
	}
	f := os.NewFile(uintptr(l.ep), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var n int
		var werr error
		err := rc.Read(func(uintptr) bool {
			n, werr = l.epollWait(0)
			return n > 0 || (werr != nil && !errors.Is(werr, unix.EINTR))
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			return err
		}
		l.dispatch(n)
	}
}

func (l *loop) accept() {
	for {
		fd, _, err := unix.Accept4(l.ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: another loop took it, or none is left
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &conn{fd: fd}
		l.conns[fd] = c
		_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)})
		if !l.reject {
			if err := l.dial(c); err != nil {
				log.Print(err)
				l.close(c)
			}
		}
	}
}

// dial connects the client's upstream connection; on loopback a blocking connect is at once.
func (l *loop) dial(c *conn) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(fd, &l.up); err != nil {
		unix.Close(fd)
		return fmt.Errorf("upstream: %w", err)
	}
	_ = unix.SetNonblock(fd, true)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	u := &conn{fd: fd, peer: c, isUp: true}
	c.peer = u
	l.conns[fd] = u
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)})
}

func (l *loop) read(c *conn) {
	n, err := l.sysRead(c.fd, l.buf)
	if n <= 0 {
		if err == unix.EAGAIN {
			return
		}
		l.close(c)
		return
	}
	c.in = append(c.in, l.buf[:n]...)
	for {
		size := messageSize(c.in, c.isUp)
		if size <= 0 || size > len(c.in) {
			if size < 0 {
				l.close(c)
			}
			return // incomplete: wait for more
		}
		if l.reject {
			l.write(c, l.rejects)
		} else if l.headers && !c.isUp {
			l.write(c.peer, l.rewrite(c.in[:size]))
		} else {
			l.write(c.peer, c.in[:size])
		}
		c.in = c.in[:copy(c.in, c.in[size:])]
	}
}

// messageSize is the length of the first whole HTTP/1.1 message in b: its header section and
// a Content-Length body. 0: not whole yet; -1: not a message this prototype passes on.
func messageSize(b []byte, response bool) int {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > 16<<10 {
			return -1
		}
		return 0
	}
	head := b[:end+2]
	size := end + 4
	for len(head) > 0 {
		i := bytes.Index(head, []byte("\r\n"))
		line := head[:i]
		head = head[i+2:]
		if len(line) > 15 && (line[0]|0x20) == 'c' && bytes.EqualFold(line[:15], []byte("content-length:")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(line[15:])))
			if err != nil || n < 0 {
				return -1
			}
			size += n
		} else if len(line) > 18 && (line[0]|0x20) == 't' && bytes.EqualFold(line[:18], []byte("transfer-encoding:")) {
			return -1
		}
	}
	return size
}

func (l *loop) write(c *conn, p []byte) {
	if len(c.out) > 0 {
		c.out = append(c.out, p...)
		return
	}
	n, err := l.sysWrite(c.fd, p)
	if err != nil && err != unix.EAGAIN {
		l.close(c)
		return
	}
	if n < 0 {
		n = 0
	}
	if n < len(p) {
		c.out = append(c.out, p[n:]...)
		c.inOut = true
		_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT, Fd: int32(c.fd)})
	}
}

func (l *loop) flush(c *conn) {
	n, err := l.sysWrite(c.fd, c.out)
	if err != nil && err != unix.EAGAIN {
		l.close(c)
		return
	}
	if n > 0 {
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	if len(c.out) == 0 && c.inOut {
		c.inOut = false
		_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
	}
}

// close closes a connection and its pair.
func (l *loop) close(c *conn) {
	for _, x := range []*conn{c, c.peer} {
		if x == nil || l.conns[x.fd] != x {
			continue
		}
		delete(l.conns, x.fd)
		unix.Close(x.fd)
	}
}

// rewrite adds, after the request line, the headers the gateway sends every upstream: the same
// number of bytes for the upstream to read as the gateway's.
func (l *loop) rewrite(req []byte) []byte {
	i := bytes.Index(req, []byte("\r\n"))
	l.scratch = append(l.scratch[:0], req[:i+2]...)
	l.scratch = append(l.scratch, "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: 127.0.0.1:9016\r\n"+
		"X-Request-Id: 6qUYK7dicsNiDRrd4iVXj4zcsqcehQ1u\r\nX-User-Id: 0a6c7bd4-3b52-4b5e-9d4e-2f3f8f7c1c2e\r\nX-User-Roles: customer\r\n"...)
	return append(l.scratch, req[i+2:]...)
}

// With -raw, calls that cannot block skip the runtime's entersyscall/exitsyscall; epoll_wait
// first looks without waiting, and only then waits as an ordinary system call.
func (l *loop) epollWait(msec int) (int, error) {
	if l.raw {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		if e == 0 && r > 0 {
			return int(r), nil
		}
	}
	return unix.EpollWait(l.ep, l.events, msec)
}

func (l *loop) sysRead(fd int, p []byte) (int, error) {
	if !l.raw {
		return unix.Read(fd, p)
	}
	return rawIO(unix.SYS_READ, fd, p)
}

func (l *loop) sysWrite(fd int, p []byte) (int, error) {
	if !l.raw {
		return unix.Write(fd, p)
	}
	return rawIO(unix.SYS_WRITE, fd, p)
}

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
