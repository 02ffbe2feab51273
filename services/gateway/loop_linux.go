//go:build linux

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/shopmesh/shopmesh/services/internal/web"
)

// loopEngine is the gateway's data plane as nginx builds one (GATEWAY_ENGINE=loop): one event
// loop per core, each a goroutine with its own SO_REUSEPORT listener and epoll set, owning
// its client and upstream connections outright. A request costs no goroutine, no channel and
// no deadline timer: the loop reads it into a buffer, frames it with package h1, routes,
// authenticates and limits it in place, writes the rewritten head and the body as they come to
// a pooled upstream connection, and passes the response back the same way. Measured with
// bench/loopproxy, this design and not net/http's reaches nginx's throughput here.
//
// Work that may block never runs in a loop: a token not yet in the cache is verified (and the
// JWKS fetched), and a shared limit decided in Redis, by a goroutine that posts the rest of the
// request back to its loop through an eventfd. What the loop does not do itself it hands over
// whole: the connection is taken out of the loop, with the bytes already read, and served by
// the net/http engine from then on, through the same framing guard as its own connections
// (guard.go). That is routes with https upstreams (mutual TLS needs crypto/tls, which wants a
// net.Conn), HTTP/1.0 clients, upgrade requests with a body, and request targets that are not
// plain origin-form paths (percent-encoded, dot segments, double slashes, absolute form): the
// net/http engine decodes those before routing, and refuses dot segments, since a route must
// never be chosen on a path its upstream reads otherwise. Protocol upgrades (WebSocket) stay
// in the loop: after the upstream's 101 it carries bytes both ways, unread.
type loopEngine struct {
	g      *Gateway
	srv    *web.Server
	handed *handoffListener // the connections handed over, served by handSrv
	// handSrv is the net/http engine's server for the connections handed over.
	handSrv *http.Server
	logger  *slog.Logger
	local   *LocalLimiter // the in-process limiter, decided in the loop; nil when Redis decides
	timeout time.Duration // UPSTREAM_TIMEOUT: from the request's last byte to the response head
	tick    time.Duration // how often a loop runs its timers; loopTick but in tests
	// idleTick is how often a loop with no request in flight runs them: idle connections'
	// timeouts need no finer steps, and an idle gateway then wakes once a second, not 40 times.
	idleTick time.Duration
	traced   bool
	tracer   trace.Tracer
	// traceHeaders are the propagator's fields: with tracing on, the gateway writes them anew.
	traceHeaders   []string
	metricsHandler http.Handler
	handoffs       *prometheus.CounterVec // gateway_loop_handoffs_total, by reason
	trusted        []netip.Prefix
	ups            map[*Upstream]*loopUpstream
	tlsRoutes      map[*Route]bool // routes with an https upstream: their connections go to the net/http engine
	loops          []*loop
	addr           net.Addr

	draining atomic.Bool
	clients  atomic.Int64 // client connections open in the loops
}

// loopUpstream is one upstream address as the loops dial it; each loop keeps its own pool.
type loopUpstream struct {
	index  int
	addr   string // host:port, as metrics label it
	host   string // the Host header upstream
	path   string // the target URL's path without its trailing slash
	tls    bool   // https: served by the net/http engine
	budget *retryBudget
	up     prometheus.Gauge
	// sockaddrs are the address's IPs: fixed for an IP literal, refreshed from DNS otherwise.
	sockaddrs atomic.Pointer[[]unix.Sockaddr]
	next      atomic.Uint32
	lookup    lookupFunc
	lookupMu  sync.Mutex // one lookup at a time: requests waiting for an address share it
}

// lookupFunc resolves a host name, as net.Resolver.LookupNetIP does.
type lookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// errUnresolved: an upstream named by host name has no address yet.
var errUnresolved = errors.New("the upstream's address is not resolved yet")

// Limits of the loop engine.
const (
	loopRespLimit   = 64 << 10 // the largest response header section passed on
	loopBufSize     = 32 << 10 // a connection's read buffer, held only while it has bytes in it
	loopMaxPending  = 256 << 10
	loopIdleTimeout = 90 * time.Second // a client connection with no request
	loopUpIdle      = 30 * time.Second // a pooled upstream connection
	loopMaxIdleUp   = 256              // pooled connections per upstream per loop
	loopTick        = 25 * time.Millisecond
	loopIdleTick    = time.Second
	loopResolve     = 10 * time.Second
	loopAcceptPause = 100 * time.Millisecond
)

func newLoopEngine(ctx context.Context, g *Gateway, srv *web.Server, cfg Config, logger *slog.Logger) (*loopEngine, error) {
	return newLoopEngineWith(ctx, g, srv, cfg, logger, net.DefaultResolver.LookupNetIP)
}

// newLoopEngineWith is newLoopEngine with the resolver for upstreams named by host name.
func newLoopEngineWith(ctx context.Context, g *Gateway, srv *web.Server, cfg Config, logger *slog.Logger, lookup lookupFunc) (*loopEngine, error) {
	e := &loopEngine{g: g, srv: srv, handed: newHandoffListener(), handSrv: srv.HTTPServer(), logger: logger, timeout: cfg.UpstreamTimeout, tick: loopTick, idleTick: loopIdleTick,
		traced: srv.Tracing.Records(), tracer: srv.Tracing.Tracer("shopmesh/gateway-loop"), trusted: cfg.TrustedProxies,
		ups: map[*Upstream]*loopUpstream{}, tlsRoutes: map[*Route]bool{}, traceHeaders: srv.Tracing.Propagator.Fields(),
		metricsHandler: promhttp.HandlerFor(srv.Registry, promhttp.HandlerOpts{}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_loop_handoffs_total",
			Help: "Client connections the event loops handed to the net/http engine, by reason: tls_upstream, http10, upgrade_with_body, path.",
		}, []string{"reason"})}
	if err := srv.Registry.Register(e.handoffs); err != nil {
		return nil, fmt.Errorf("loop engine metrics: %w", err)
	}
	e.local, _ = g.limiter.(*LocalLimiter)
	byAddr := map[string]*loopUpstream{}
	for i := range g.table.Routes {
		for j := range g.table.Routes[i].Upstreams {
			u := &g.table.Routes[i].Upstreams[j]
			addr := hostPort(u.target.Scheme, u.target.Host)
			key := u.target.Scheme + "://" + addr + u.target.Path
			lu := byAddr[key]
			if lu == nil {
				lu = &loopUpstream{index: len(byAddr), addr: addr, host: u.target.Host, path: strings.TrimSuffix(u.target.Path, "/"),
					tls: u.target.Scheme == "https", budget: newRetryBudget(time.Now()), up: g.metrics.upstreamUp.WithLabelValues(addr),
					lookup: lookup}
				if err := lu.resolve(ctx); err != nil && !lu.tls {
					logger.Warn("upstream address not resolved yet", "upstream", addr, "error", err)
				}
				byAddr[key] = lu
			}
			e.ups[u] = lu
			if lu.tls {
				e.tlsRoutes[&g.table.Routes[i]] = true
			}
		}
	}
	go e.refresh(ctx, byAddr)
	return e, nil
}

// resolve looks the upstream's host up; an IP literal needs no lookup.
func (u *loopUpstream) resolve(ctx context.Context) error {
	host, portStr, err := net.SplitHostPort(u.addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("port %q: %w", portStr, err)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err = u.lookup(rctx, "ip", host)
		cancel()
		if err != nil {
			return err
		}
	}
	var sas []unix.Sockaddr
	for _, ip := range ips {
		sas = append(sas, sockaddr(netip.AddrPortFrom(ip, uint16(port))))
	}
	if len(sas) == 0 {
		return fmt.Errorf("%s has no address", host)
	}
	u.sockaddrs.Store(&sas)
	return nil
}

// resolveMissing looks the upstream up unless it has addresses by now: a request that found
// none waits for this lookup (shared with any other waiting) rather than failing until the
// next refresh.
func (u *loopUpstream) resolveMissing(ctx context.Context) error {
	u.lookupMu.Lock()
	defer u.lookupMu.Unlock()
	if sas := u.sockaddrs.Load(); sas != nil && len(*sas) > 0 {
		return nil
	}
	return u.resolve(ctx)
}

// refresh looks up the upstreams named by host name again every loopResolve, off the loops.
func (e *loopEngine) refresh(ctx context.Context, ups map[string]*loopUpstream) {
	t := time.NewTicker(loopResolve)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, u := range ups {
			host, _, _ := net.SplitHostPort(u.addr)
			if _, err := netip.ParseAddr(host); err != nil && !u.tls {
				u.lookupMu.Lock()
				err := u.resolve(ctx)
				u.lookupMu.Unlock()
				if err != nil {
					e.logger.Warn("upstream lookup failed; keeping the last addresses", "upstream", u.addr, "error", err)
				}
			}
		}
	}
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Unmap().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// listen opens one SO_REUSEPORT listener per loop on addr; port 0 picks one port for all.
func (e *loopEngine) listen(addr string, n int) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen on %s (HTTP_ADDR): %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("listen on %s (HTTP_ADDR): bad port", addr)
	}
	ip := netip.IPv6Unspecified() // all addresses, IPv4 included (IPV6_V6ONLY off)
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			ips, lerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
			if lerr != nil || len(ips) == 0 {
				return fmt.Errorf("listen on %s (HTTP_ADDR): %v", addr, lerr)
			}
			ip = ips[0]
		}
	}
	if port != 0 {
		if err := portFree(netip.AddrPortFrom(ip, uint16(port))); err != nil {
			return fmt.Errorf("listen on %s (HTTP_ADDR): %w", addr, err)
		}
	}
	for i := 0; i < n; i++ {
		l, err := newLoop(e, netip.AddrPortFrom(ip, uint16(port)))
		if err != nil {
			e.closeLoops()
			return fmt.Errorf("listen on %s (HTTP_ADDR): %w", addr, err)
		}
		e.loops = append(e.loops, l)
		if port == 0 {
			sa, _ := unix.Getsockname(l.ln)
			port = sockPort(sa)
			e.addr = &net.TCPAddr{IP: ip.AsSlice(), Port: port}
		}
	}
	if e.addr == nil {
		e.addr = &net.TCPAddr{IP: ip.AsSlice(), Port: port}
	}
	return nil
}

// portFree binds at once without SO_REUSEPORT, and lets go. The loops' listeners share their
// port with SO_REUSEPORT, which would as readily share it with another process of the same
// user (a second gateway started by mistake), each then getting a part of the connections;
// this bind fails instead while anything listens there.
func portFree(at netip.AddrPort) error {
	family := unix.AF_INET6
	if at.Addr().Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) // TIME_WAIT from a previous run is no conflict
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if err := unix.Bind(fd, sockaddr(at)); err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			return fmt.Errorf("%w: another process is listening on port %d", err, at.Port())
		}
		return err
	}
	return nil
}

func sockPort(sa unix.Sockaddr) int {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return 0
}

func (e *loopEngine) closeLoops() {
	for _, l := range e.loops {
		l.closeAll()
	}
}

// serve runs the loops until ctx is done, then drains as web.Server does: /readyz answers 503
// and every response closes its connection for drain, then the listeners close, connections
// get grace to finish, and what is still open after it is closed.
func (e *loopEngine) serve(ctx context.Context, drain, grace time.Duration) error {
	errc := make(chan error, len(e.loops))
	go func() { _ = e.handSrv.Serve(e.handed) }() // ends with Shutdown below
	var running sync.WaitGroup
	for _, l := range e.loops {
		running.Add(1)
		go func() { defer running.Done(); errc <- l.run() }()
	}
	e.logger.Info("listening", "addr", e.addr.String(), "engine", "loop", "loops", len(e.loops))
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("event loop: %w", err)
	case <-ctx.Done():
	}
	e.draining.Store(true)
	e.srv.Drain()
	if err == nil && drain > 0 {
		time.Sleep(drain)
	}
	for _, l := range e.loops {
		l.post(l.stopListening)
	}
	deadline := time.Now().Add(grace)
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	handDone := make(chan error, 1)
	go func() { handDone <- e.handSrv.Shutdown(sctx) }()
	for e.clients.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, l := range e.loops {
		l.post(l.stop)
	}
	running.Wait()
	e.closeLoops()
	if herr := <-handDone; herr != nil && err == nil {
		err = fmt.Errorf("graceful shutdown: %w", herr)
	}
	return err
}

// loop is one event loop: its goroutine, listener, epoll set and connections. Nothing in it is
// touched by another goroutine except posted, under mu.
type loop struct {
	e         *loopEngine
	ep, ln    int
	epf       *os.File // ep, registered with the Go runtime's poller (see run)
	efd       int      // eventfd: posted work is waiting
	socks     []sock
	events    []unix.EpollEvent
	now       time.Time
	tick      time.Time
	slow      bool   // the poller's deadline is the idle tick's: a request must bring it nearer
	ticks     int    // timer runs, for tests
	date      []byte // "Date: …\r\n", made once a second
	dateAt    int64
	idle      [][]*upConn // per loopUpstream.index
	bufs      [][]byte    // free read buffers
	scratch   []byte
	head      []byte
	exchanges []*exchange // finished, for reuse
	stopped   bool
	// acceptPaused is when accepting stopped for want of descriptors; zero while accepting.
	acceptPaused time.Time

	mu     sync.Mutex
	posted []func()
	run2   []func()
}

// sock is what a file descriptor of the loop is: a client or an upstream connection.
type sock interface {
	event(l *loop, ev uint32)
}

func newLoop(e *loopEngine, at netip.AddrPort) (*loop, error) {
	family := unix.AF_INET6
	if at.Addr().Is4() {
		family = unix.AF_INET
	}
	ln, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	l := &loop{e: e, ln: ln, ep: -1, efd: -1, events: make([]unix.EpollEvent, 256), idle: make([][]*upConn, len(e.ups)+1)}
	_ = unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		l.closeAll()
		return nil, err
	}
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(ln, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if err := unix.Bind(ln, sockaddr(at)); err != nil {
		l.closeAll()
		return nil, err
	}
	if err := unix.Listen(ln, 4096); err != nil {
		l.closeAll()
		return nil, err
	}
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		l.closeAll()
		return nil, err
	}
	// Non-blocking, so that os.NewFile registers it with the runtime's poller.
	if err := unix.SetNonblock(l.ep, true); err != nil {
		l.closeAll()
		return nil, err
	}
	l.epf = os.NewFile(uintptr(l.ep), "epoll")
	if l.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		l.closeAll()
		return nil, err
	}
	for _, fd := range []int{ln, l.efd} {
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			l.closeAll()
			return nil, err
		}
	}
	return l, nil
}

// post runs fn in the loop; goroutines finish their work through it.
// Once the loop is closed nothing runs fn: a goroutine that finishes after shutdown must not
// write to a descriptor number that may since have been given to another file.
func (l *loop) post(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.efd < 0 {
		return
	}
	l.posted = append(l.posted, fn)
	var one = [8]byte{1}
	_, _ = unix.Write(l.efd, one[:])
}

func (l *loop) runPosted() {
	var b [8]byte
	_, _ = sysRead(l.efd, b[:])
	l.mu.Lock()
	l.run2, l.posted = l.posted, l.run2[:0]
	l.mu.Unlock()
	for i, fn := range l.run2 {
		fn()
		l.run2[i] = nil
	}
}

// run is the loop. It takes what is ready with an epoll_wait that does not wait, and when
// nothing is, parks in the Go runtime's poller, where its epoll descriptor is registered as a
// socket's is. It does not block in epoll_wait on a thread of its own, as an nginx worker
// does: to Go such a thread holds a P for the whole wait, so sysmon keeps taking the P back and
// handing it on (and, having found work, polls every 20 us), a loop that never passes through
// the scheduler is preempted every 10 ms, and goroutines queued on a held P wait for sysmon.
// Measured side by side (docs/performance.md), the parked loops add less latency and use less
// CPU than the blocking ones did. The tick for timers is the poller's read deadline.
func (l *loop) run() error {
	rc, err := l.epf.SyscallConn()
	if err != nil {
		return err
	}
	if err := l.epf.SetReadDeadline(time.Now().Add(l.e.tick)); err != nil {
		return fmt.Errorf("the loop's epoll descriptor is not in the runtime's poller: %w", err)
	}
	for !l.stopped {
		// After a round that took every ready event, the loop waits without looking again:
		// the kernel tells an epoll set's watchers of every event added to it
		// (ep_poll_callback), so one that came meanwhile has told the runtime's poller, and the
		// wait returns at once. That saves an epoll_wait per wake-up. It holds only within one
		// rc.Read: each call starts by forgetting what the poller said before it
		// (pollDesc.prepareRead), so each starts with a look. A level-triggered descriptor
		// still ready (the listener after a failed accept) may wait for the tick.
		look := true
		err := rc.Read(func(uintptr) bool {
			for {
				if !look {
					look = true
					return false
				}
				n := l.readyEvents()
				if n == 0 {
					return false
				}
				l.now = time.Now()
				l.handle(n)
				if l.stopped || l.now.Sub(l.tick) >= l.e.tick {
					return true
				}
				look = n == len(l.events) // more may be ready than the round could take
			}
		})
		tick := errors.Is(err, os.ErrDeadlineExceeded)
		if err != nil && !tick {
			return err
		}
		l.now = time.Now()
		if tick || l.now.Sub(l.tick) >= l.e.tick {
			l.tick = l.now
			next := l.e.tick
			if l.slow = !l.timers(); l.slow {
				next = max(l.e.idleTick, l.e.tick)
			}
			if err := l.epf.SetReadDeadline(l.now.Add(next)); err != nil {
				return err
			}
		}
	}
	return nil
}

// handle serves the first n of l.events.
func (l *loop) handle(n int) {
	for i := 0; i < n; i++ {
		ev := l.events[i]
		switch fd := int(ev.Fd); {
		case fd == l.ln:
			l.accept()
		case fd == l.efd:
			l.runPosted()
		case fd < len(l.socks) && l.socks[fd] != nil:
			l.socks[fd].event(l, ev.Events)
		}
	}
}

// stopListening closes the listener: new connections go to the other replicas.
func (l *loop) stopListening() {
	if l.ln >= 0 {
		_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.ln, nil) // ENOENT while accepting is paused
		_ = unix.Close(l.ln)
		l.ln = -1
	}
	l.timers() // idle connections close at once
}

func (l *loop) stop() { l.stopped = true }

// closeAll closes every descriptor of the loop; only after run has returned.
func (l *loop) closeAll() {
	for fd, s := range l.socks {
		if s != nil {
			_ = unix.Close(fd)
			l.socks[fd] = nil
			if c, ok := s.(*clientConn); ok && !c.closed {
				c.closed = true
				l.e.clients.Add(-1)
			}
		}
	}
	l.mu.Lock() // post writes to efd under mu
	efd := l.efd
	l.efd = -1
	l.mu.Unlock()
	for _, fd := range []int{l.ln, efd} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
	switch {
	case l.epf != nil:
		_ = l.epf.Close() // ep, and its place in the runtime's poller
	case l.ep >= 0:
		_ = unix.Close(l.ep)
	}
	l.ln, l.ep, l.epf = -1, -1, nil
}

func (l *loop) register(fd int, s sock) error {
	for fd >= len(l.socks) {
		l.socks = append(l.socks, make([]sock, len(l.socks)+64)...)
	}
	l.socks[fd] = s
	// Edge-triggered: each connection is registered once and never modified; the loop keeps
	// its own readable and writable flags, as nginx does, and reads until a short read.
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)})
}

func (l *loop) forget(fd int) {
	if fd < len(l.socks) {
		l.socks[fd] = nil
	}
	_ = unix.Close(fd) // also takes it out of the epoll set
}

func (l *loop) accept() {
	for l.ln >= 0 && l.acceptPaused.IsZero() {
		fd, sa, err := unix.Accept4(l.ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) {
				// Out of descriptors or memory: the connection stays queued and the listener
				// readable, so accepting again at once would spin. Pause, as nginx does.
				l.e.logger.Warn("accept failed; not accepting for a while", "error", err, "pause", loopAcceptPause)
				l.acceptPaused = l.now
				l.hurry()
				_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.ln, nil)
			} else if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ECONNABORTED) && !errors.Is(err, unix.EINTR) {
				l.e.logger.Warn("accept failed", "error", err)
			}
			return
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &clientConn{fd: fd, remote: peerAddr(sa), last: l.now, readiness: readiness{writable: true}}
		if err := l.register(fd, c); err != nil {
			l.forget(fd)
			continue
		}
		l.e.clients.Add(1)
	}
}

func peerAddr(sa unix.Sockaddr) netip.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(a.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(a.Addr).Unmap()
	}
	return netip.Addr{}
}

// buffer is a read buffer from the loop's free list: connections hold one only while they
// have unread bytes, so an idle keep-alive connection costs its small struct alone.
func (l *loop) buffer() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b[:0]
	}
	return make([]byte, 0, loopBufSize)
}

func (l *loop) release(b []byte) {
	if cap(b) == loopBufSize && len(l.bufs) < 1024 {
		l.bufs = append(l.bufs, b[:0])
	}
}

// readInto reads what the socket has into *buf (taken from the free list when nil). It
// returns the bytes read, 0 when the socket has nothing now (readable is then cleared), and
// -1 at end of stream or on an error. hup: the peer's FIN was reported (EPOLLRDHUP).
func (l *loop) readInto(fd int, buf *[]byte, readable *bool, hup bool) int {
	if *buf == nil {
		*buf = l.buffer()
	}
	b := *buf
	if len(b) == cap(b) {
		return 0 // full: the caller consumes before reading on
	}
	n, err := sysRead(fd, b[len(b):cap(b)])
	switch {
	case err == unix.EINTR:
		return 0
	case err == unix.EAGAIN:
		*readable = false
		return 0
	case err != nil || n <= 0:
		*readable = false
		return -1
	}
	// A short read emptied the socket: no more until the next edge (nginx's ngx_unix_recv
	// clears rev->ready the same way, which saves a read that would only say EAGAIN). Unless
	// the FIN came with the bytes: its edge is spent, and only a read finds the end (nginx's
	// pending_eof).
	if n < cap(b)-len(b) && !hup {
		*readable = false
	}
	*buf = b[:len(b)+n]
	return n
}

// flush writes what out holds. It returns false when the socket failed.
func flush(fd int, out *[]byte, writable *bool) bool {
	for len(*out) > 0 && *writable {
		n, err := sysWrite(fd, *out)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			*writable = false
			return true
		case err != nil:
			return false
		}
		if n < len(*out) {
			*writable = false // the socket's buffer is full: the next EPOLLOUT edge resumes
			*out = (*out)[:copy(*out, (*out)[n:])]
			return true
		}
		*out = (*out)[:0]
	}
	if len(*out) == 0 && cap(*out) > 64<<10 {
		*out = nil // a large response's buffer is not kept by an idle connection
	}
	return true
}

// dateField is the Date field of answers the gateway makes, made again once a second.
func (l *loop) dateField() []byte {
	if s := l.now.Unix(); s != l.dateAt || l.date == nil {
		l.dateAt = s
		l.date = append(append(l.date[:0], "Date: "...), l.now.UTC().Format(timeFormatHTTP)...)
		l.date = append(l.date, "\r\n"...)
	}
	return l.date
}

const timeFormatHTTP = "Mon, 02 Jan 2006 15:04:05 GMT"

// hurry brings the next timer run within the short tick, for something that needs it: a
// request (UPSTREAM_TIMEOUT, drains) or paused accepting.
func (l *loop) hurry() {
	if l.slow {
		l.slow = false
		_ = l.epf.SetReadDeadline(l.now.Add(l.e.tick))
	}
}

// timers ends what has waited too long: response heads past UPSTREAM_TIMEOUT, idle client
// and upstream connections, bodies drained for too long. A scan every loopTick costs less
// than a timer per request. It reports whether the next scan must come as soon: a request is
// in flight, accepting is paused, or the loop is closing.
func (l *loop) timers() bool {
	l.ticks++
	if !l.acceptPaused.IsZero() && l.now.Sub(l.acceptPaused) >= loopAcceptPause && l.ln >= 0 {
		l.acceptPaused = time.Time{}
		_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, l.ln, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.ln)})
	}
	closing := l.ln < 0
	busy := closing || !l.acceptPaused.IsZero()
	for _, s := range l.socks {
		switch x := s.(type) {
		case *clientConn:
			ex := x.ex
			busy = busy || (ex != nil && !x.closed) || !x.headStart.IsZero()
			lim := l.e.g.limits
			switch {
			case ex == nil && !x.headStart.IsZero() && l.now.Sub(x.headStart) > lim.header && !x.closed && !x.closeAfter:
				l.e.g.metrics.clientTimeouts.WithLabelValues("head").Inc()
				l.refuse(x, lim.headTimeout())
				l.flushClient(x)
			case ex != nil && !ex.reqDone && !ex.waiting && !ex.discard && !ex.tunnel && lim.minRate > 0 &&
				l.now.After(lim.bodyDeadline(ex.start, ex.bodyReceived())):
				l.e.g.metrics.clientTimeouts.WithLabelValues("body").Inc()
				l.abortRequest(ex, lim.bodyTimeout())
				l.flushClient(x)
			case ex == nil && (closing || l.now.Sub(x.last) > loopIdleTimeout) && len(x.out) == 0:
				l.closeClient(x)
			case ex != nil && ex.u != nil && !ex.deadline.IsZero() && l.now.After(ex.deadline):
				l.upstreamFailed(ex, errUpstreamTimeout)
				l.flushClient(x)
			case ex != nil && ex.discard && !ex.drainUntil.IsZero() && l.now.After(ex.drainUntil):
				l.closeClient(x)
			case ex != nil && !ex.reqDone && !ex.waiting && l.now.Sub(x.last) > loopIdleTimeout:
				l.closeClient(x) // a request body that stopped coming
			}
		case *upConn:
			if x.ex == nil && (closing || l.now.Sub(x.idleSince) > loopUpIdle) {
				l.closeUp(x)
			}
		}
	}
	return busy
}

var errUpstreamTimeout = errors.New("upstream timeout")

// handOff takes c out of the loop and serves it with the net/http engine from its current
// request on, the bytes already read first.
func (l *loop) handOff(c *clientConn, reason string) {
	l.e.handoffs.WithLabelValues(reason).Inc()
	pending := append([]byte(nil), c.in...)
	out := append([]byte(nil), c.out...)
	fd := c.fd
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil)
	l.socks[fd] = nil
	l.release(c.in)
	c.in, c.out, c.closed = nil, nil, true
	l.e.clients.Add(-1)
	f := os.NewFile(uintptr(fd), "client")
	nc, err := net.FileConn(f) // a duplicate, in the runtime's poller
	_ = f.Close()
	if err != nil {
		l.e.logger.Warn("handing a connection to the net/http engine failed", "error", err)
		return
	}
	if len(out) > 0 { // what the loop still had to write goes first; rare, and small
		go func() {
			if _, err := nc.Write(out); err != nil {
				nc.Close()
				return
			}
			l.e.handed.hand(l.e.g.guard.conn(nc, pending))
		}()
		return
	}
	l.e.handed.hand(l.e.g.guard.conn(nc, pending))
}

// handoffListener is the listener the net/http engine's server accepts the handed-over
// connections from.
type handoffListener struct {
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// hand gives c to the server, or closes it when the listener is closed.
func (l *handoffListener) hand(c net.Conn) {
	go func() {
		select {
		case l.conns <- c:
		case <-l.done:
			c.Close()
		}
	}()
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "handoff" }

// runLoop serves the event-loop engine on HTTP_ADDR until ctx is done.
func runLoop(ctx context.Context, cfg Config, logger *slog.Logger) error {
	srv, g, release, err := newServer(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer release()
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e, err := newLoopEngine(lctx, g, srv, cfg, logger)
	if err != nil {
		return err
	}
	loops := cfg.Loops
	if loops == 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	if err := e.listen(cfg.HTTP.Addr, loops); err != nil {
		return err
	}
	return e.serve(ctx, cfg.HTTP.ShutdownDrain, cfg.HTTP.ShutdownTimeout)
}
