//go:build linux

package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/shopmesh/shopmesh/services/gateway/h1"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// clientConn is a client's connection. Requests on it are served one at a time, in order:
// pipelined requests wait in its buffer until the one before is answered.
type clientConn struct {
	fd                 int
	remote             netip.Addr
	in, out            []byte
	readiness               // hup: the client's FIN was reported
	closed, closeAfter bool // closeAfter: close once out is written
	ex                 *exchange
	head               h1.Head // the current request's, pointing into in
	last               time.Time
	headStart          time.Time // the first byte of a head not whole yet: REQUEST_HEADER_TIMEOUT runs from it
}

// upConn is a connection to an upstream, serving one exchange at a time.
type upConn struct {
	fd                 int
	lu                 *loopUpstream
	in, out            []byte
	readiness          // hup: the upstream's FIN was reported
	connecting, closed bool
	writeDead          bool // a write failed: the upstream stopped reading
	spoiled            bool // bytes came after the response: never reused
	ex                 *exchange
	written            int // bytes of the current request that reached the socket
	idleSince          time.Time
	head               h1.Head
}

// exchange is one request and its response.
type exchange struct {
	c      *clientConn
	u      *upConn
	lu     *loopUpstream
	route  *Route
	stats  *routeStats
	method string
	path   string // as it came: the loop serves only paths that need no decoding or cleaning
	query  string // "?…", raw, or ""
	id     string
	start  time.Time
	sent   time.Time
	claims *jwtauth.Claims
	limits limitAnswer
	status int
	client netip.Addr // the client's address: the peer's, or X-Forwarded-For's from TRUSTED_PROXIES

	waiting     bool // off the loop: a token being verified or a limit decided in Redis
	headDropped bool
	retried     bool
	looked      bool   // the upstream was looked up for this request, having no address
	local       bool   // answered by the gateway itself
	clientClose bool   // the client asked to close after this request
	upgrade     string // the protocol the client asked to switch to (Upgrade), or ""
	label       string // the route label of a built-in endpoint
	tunnel      bool   // switched: bytes pass both ways, unread, until either side closes

	// The request body: passed on as it arrives (a chunked one re-coded), or dropped (discard)
	// once the request has been answered without it.
	reqBody    h1.Body
	reqLeft    int64
	reqChunks  h1.Chunks
	reqRead    int64 // bytes of it taken from the client so far
	awaitBody  bool  // forward waits for the first bodyBuffer bytes before it takes an upstream connection
	reqDone    bool
	expect100  bool
	discard    bool
	discarded  int64
	drainUntil time.Time

	// The response.
	respHead   bool // its head has gone to the client
	respBody   h1.Body
	respLeft   int64
	respChunks h1.Chunks
	respDone   bool
	deadline   time.Time // for the response head, once the request is sent

	ctx   context.Context
	span  trace.Span
	cspan trace.Span
}

// readiness is what epoll has said of a connection, kept by the loop itself: edges come once.
type readiness struct {
	readable, writable bool
	hup                bool // the peer's FIN was reported
}

// note records an event's edges.
func (r *readiness) note(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		r.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		r.hup = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		r.writable = true
	}
}

// event is the client connection's readiness.
func (c *clientConn) event(l *loop, ev uint32) {
	c.note(ev)
	l.serveClient(c)
	// A response that waited for room in this client's buffer goes on.
	if ex := c.ex; !c.closed && ex != nil && ex.u != nil && ex.respHead && !ex.respDone && len(c.out) < loopMaxPending {
		l.serveUp(ex.u)
	}
}

// serveClient reads and handles what the client sent, as far as it can go now. Edges come
// only with new bytes or new room: after a flush that made room, it must go on itself.
func (l *loop) serveClient(c *clientConn) {
	for round := 0; !c.closed; round++ {
		for !c.closed {
			l.advanceClient(c)
			if c.closed || !c.readable || !l.wantsClientBytes(c) {
				break
			}
			n := l.readInto(c.fd, &c.in, &c.readable, c.hup)
			if n < 0 {
				if c.ex == nil && len(c.out) > 0 {
					c.closeAfter = true // the last answer still goes out; flushClient closes after it
					l.flushClient(c)
					return
				}
				l.closeClient(c) // the client closed or failed; an exchange in flight ends with it
				return
			}
			if n == 0 {
				break
			}
			c.last = l.now
		}
		if c.closed {
			return
		}
		if ex := c.ex; ex != nil && ex.u != nil {
			l.flushUp(ex.u)
		}
		l.flushClient(c)
		ex := c.ex
		if c.closed || !l.wantsClientBytes(c) || !(c.readable || (ex != nil && !ex.reqDone && !ex.waiting && len(c.in) > 0)) {
			return
		}
		if round == loopRounds { // a long upload yields to the loop's other connections
			l.post(func() { l.serveClient(c) })
			return
		}
	}
}

// loopRounds bounds how long one connection keeps its loop before the others' turn.
const loopRounds = 16

func (l *loop) wantsClientBytes(c *clientConn) bool {
	ex := c.ex
	switch {
	case c.closeAfter:
		return false
	case ex == nil:
		return len(c.out) < loopMaxPending
	case ex.waiting || ex.reqDone:
		return false
	case ex.discard || ex.awaitBody:
		return true
	}
	return ex.u != nil && len(ex.u.out) < loopMaxPending
}

// advanceClient handles the bytes the client's buffer holds: a new request's head, or the
// body of the current one.
func (l *loop) advanceClient(c *clientConn) {
	for !c.closed && !c.closeAfter {
		ex := c.ex
		if ex == nil {
			if len(c.in) == 0 {
				l.release(c.in)
				c.in = nil
				return
			}
			ok, err := h1.ParseRequest(c.in, headLimit, &c.head)
			if err != nil {
				l.refuse(c, parseRefusal(err))
				return
			}
			if !ok {
				if c.headStart.IsZero() {
					c.headStart = l.now
				}
				return
			}
			c.headStart = time.Time{}
			if r := checkRequest(&c.head); r != nil {
				l.refuse(c, r)
				return
			}
			l.start(c)
			continue
		}
		if ex.awaitBody {
			if l.bodyAwaited(ex) {
				return
			}
			ex.awaitBody = false
			l.forward(ex)
			continue
		}
		if ex.waiting || ex.reqDone || len(c.in) == 0 {
			return
		}
		if !ex.discard && (ex.u == nil || len(ex.u.out) >= loopMaxPending) {
			return
		}
		var n int
		var done bool
		var err error
		if ex.reqBody == h1.Chunked && !ex.discard {
			// The chunks go on coded by the gateway: no extensions, no trailers.
			ex.u.out, n, done, err = ex.reqChunks.Reframe(ex.u.out, c.in)
		} else {
			n, done, err = takeBody(ex.reqBody, &ex.reqLeft, &ex.reqChunks, c.in)
		}
		if err != nil {
			// A chunked body that breaks the coding: the message's end cannot be found, so the
			// connection cannot carry another.
			l.abortRequest(ex, errBadChunks)
			return
		}
		ex.reqRead += int64(n)
		if ex.reqBody == h1.Chunked && !ex.discard && ex.reqChunks.Data > l.e.g.limits.bodyLimit(ex.route) {
			l.abortRequest(ex, l.e.g.limits.tooLarge(ex.route))
			return
		}
		if ex.discard {
			ex.discarded += int64(n)
			if ex.discarded > drainBytes {
				c.closeAfter = true // too much to drain: the connection closes instead
				ex.reqDone = true
			}
		} else if ex.reqBody != h1.Chunked {
			ex.u.out = append(ex.u.out, c.in[:n]...)
		}
		c.consume(n)
		if done {
			ex.reqDone = true
			l.requestSent(ex)
		}
	}
}

func (c *clientConn) consume(n int) { c.in = c.in[:copy(c.in, c.in[n:])] }

// abortRequest ends a request whose body cannot go on (it broke its coding, went over the
// limit, or came too slowly): an upstream that has its head gets an aborted request, and the
// client the refusal, or just the close when its answer has begun.
func (l *loop) abortRequest(ex *exchange, r *refusal) {
	c := ex.c
	if ex.respHead || ex.local {
		l.closeClient(c)
		return
	}
	if ex.u != nil {
		l.closeUp(ex.u)
	}
	ex.reqDone = true
	l.answer(ex, r.status, r.detail, "")
	c.closeAfter = true
}

// bodyAwaited reports whether ex's body is still awaited before the request goes upstream:
// until bodyBuffer bytes of it (all of a smaller one) are in, no upstream connection is
// taken, so a body that comes slowly holds nothing but its own connection until the minimum
// rate ends it. A client that asked for 100 Continue sends nothing before it.
func (l *loop) bodyAwaited(ex *exchange) bool {
	c, h := ex.c, &ex.c.head
	have := len(c.in) - h.Size
	switch {
	case ex.expect100 || ex.reqDone || have >= bodyBuffer || len(c.in) == cap(c.in):
		return false
	case h.Body == h1.Length:
		return int64(have) < h.Length
	}
	trial := ex.reqChunks // chunked: a body that ends within the buffer goes on whole
	_, done, err := trial.Scan(c.in[h.Size:])
	return !done && err == nil
}

// bodyReceived is how much of ex's body has come from the client: taken, or waiting in its
// buffer.
func (ex *exchange) bodyReceived() int64 {
	n := ex.reqRead + int64(len(ex.c.in))
	if !ex.headDropped {
		n -= int64(ex.c.head.Size)
	}
	return n
}

// takeBody is how many bytes of b belong to a body framed as kind, and whether they end it.
func takeBody(kind h1.Body, left *int64, chunks *h1.Chunks, b []byte) (int, bool, error) {
	switch kind {
	case h1.Length:
		n := int(min(*left, int64(len(b))))
		*left -= int64(n)
		return n, *left == 0, nil
	case h1.Chunked:
		return chunks.Scan(b)
	case h1.UntilClose:
		return len(b), false, nil
	}
	return 0, true, nil
}

// refuse answers a request the gateway does not pass on (framing.go), and closes: where it
// ends, or what follows it, is not certain.
func (l *loop) refuse(c *clientConn, r *refusal) {
	id := newRequestID()
	l.scratch = appendProblem(l.scratch[:0], r.status, r.detail, "", id)
	c.out = appendResponse(c.out, l.dateField(), r.status, web.MIMEProblemJSON, id, limitAnswer{}, "", true, l.scratch)
	c.in = c.in[:0]
	c.closeAfter = true
}

// start routes a new request, or hands the connection over when the loop does not serve it.
func (l *loop) start(c *clientConn) {
	h := &c.head
	target := h.Target
	switch {
	case h.Minor == 0:
		l.handOff(c, "http10")
		return
	case target[0] != '/':
		l.handOff(c, "path")
		return
	}
	rawPath, query := target, []byte(nil)
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		rawPath, query = target[:i], target[i:]
	}
	if !plainPath(rawPath) {
		l.handOff(c, "path")
		return
	}
	method := methodName(h.Method)
	path := string(rawPath)
	builtIn := isBuiltIn(path, method)
	var r *Route
	if !builtIn {
		r = l.e.g.table.Match(method, path)
	}
	if r != nil && l.e.tlsRoutes[r] {
		l.handOff(c, "tls_upstream")
		return
	}
	upgrade := ""
	if h.Upgrade {
		upgrade = allowedUpgrade(r, h.Get("Upgrade"))
	}
	if upgrade != "" && h.Body != h1.NoBody {
		l.handOff(c, "upgrade_with_body")
		return
	}
	l.hurry() // its deadlines need the short tick
	ex := l.newExchange()
	*ex = exchange{c: c, route: r, method: method, path: path, start: l.now, ctx: context.Background(),
		reqBody: h.Body, reqLeft: h.Length, reqDone: h.Body == h1.NoBody, expect100: h.Expect100, clientClose: h.Close}
	if len(query) > 0 {
		ex.query = string(query)
	}
	ex.upgrade = upgrade
	ex.client = realClientIP(c.remote, joinedField(h, "X-Forwarded-For"), l.e.trusted)
	c.ex = ex
	if id := h.Get("X-Request-Id"); len(id) > 0 && len(id) <= web.MaxRequestIDLen {
		ex.id = string(id)
	} else {
		ex.id = newRequestID()
	}
	ex.span = trace.SpanFromContext(ex.ctx)
	if l.e.traced {
		ex.ctx = l.e.srv.Tracing.Propagator.Extract(ex.ctx, headCarrier{h})
		ex.ctx, ex.span = l.e.tracer.Start(ex.ctx, method, trace.WithSpanKind(trace.SpanKindServer))
	}
	if builtIn {
		l.builtIn(ex)
		return
	}
	if r == nil {
		l.answer(ex, http.StatusNotFound, fmt.Sprintf("no route for %s %s", method, path), "")
		return
	}
	ex.stats = l.e.g.metrics.route(r.Name)
	if refused := l.e.g.limits.checkLength(h, r); refused != nil {
		// Answered before its body, which is then read and dropped (within drainBytes and
		// drainTime, as after an upstream's early answer) so that the client is not reset.
		l.answer(ex, refused.status, refused.detail, "")
		return
	}
	l.authenticate(ex)
}

// plainPath reports whether p needs no decoding or cleaning: no percent-encoding, no dot
// segments, no empty segments.
func plainPath(p []byte) bool {
	if bytes.IndexByte(p, '%') >= 0 || bytes.Contains(p, []byte("//")) || bytes.IndexByte(p, '#') >= 0 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '.' && p[i-1] == '/' && (i+1 == len(p) || p[i+1] == '/' || (p[i+1] == '.' && (i+2 == len(p) || p[i+2] == '/'))) {
			return false
		}
	}
	return true
}

// isBuiltIn: the gateway's own endpoints, as the net/http engine has them (/openapi.json for
// GET only; other methods there are routed).
func isBuiltIn(p, method string) bool {
	switch p {
	case "/healthz", "/readyz", "/metrics":
		return true
	case "/openapi.json":
		return method == http.MethodGet
	}
	return false
}

// builtIn answers the gateway's own endpoints in the loop: a connection that asked for one
// stays in it. Readiness checks and metrics may take a while, so they are made off the loop.
func (l *loop) builtIn(ex *exchange) {
	ex.label = ex.path
	switch ex.path {
	case "/healthz":
		l.respond(ex, http.StatusOK, "application/json", healthzBody)
	case "/openapi.json":
		l.respond(ex, http.StatusOK, "application/json", l.e.g.document)
	case "/readyz":
		ctx := ex.ctx
		l.offLoop(ex, func() func() {
			err := l.e.srv.Ready(ctx)
			if l.e.draining.Load() {
				err = errors.New("shutting down")
			}
			return func() {
				if err != nil {
					l.answer(ex, http.StatusServiceUnavailable, "not ready: "+err.Error(), "")
					return
				}
				l.respond(ex, http.StatusOK, "application/json", readyBody)
			}
		})
	case "/metrics":
		l.offLoop(ex, func() func() {
			var rec bodyRecorder
			l.e.metricsHandler.ServeHTTP(&rec, &http.Request{Method: http.MethodGet, Header: http.Header{}})
			return func() { l.respond(ex, http.StatusOK, rec.header.Get("Content-Type"), rec.body.Bytes()) }
		})
	}
}

var (
	healthzBody = []byte(`{"status":"ok"}`)
	readyBody   = []byte(`{"status":"ready"}`)
)

// bodyRecorder keeps what a handler writes: the metrics handler's answer, made off the loop.
type bodyRecorder struct {
	header http.Header
	body   bytes.Buffer
}

func (r *bodyRecorder) Header() http.Header {
	if r.header == nil {
		r.header = http.Header{}
	}
	return r.header
}
func (r *bodyRecorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *bodyRecorder) WriteHeader(int)             {}

// respond answers ex with a body of the gateway's own.
func (l *loop) respond(ex *exchange, status int, contentType string, body []byte) {
	l.reply(ex, status, contentType, body, "")
}

// authenticate applies the route's auth mode: a token in the cache is checked here, any
// other is verified off the loop.
func (l *loop) authenticate(ex *exchange) {
	r, h := ex.route, &ex.c.head
	header := h.Get("Authorization")
	if r.Auth != AuthNone && len(header) > len("Bearer ") && bytes.EqualFold(header[:len("Bearer ")], []byte("Bearer ")) {
		if claims := l.e.g.tokens.getBytes(header[len("Bearer "):]); claims != nil {
			ex.claims = claims
			l.limit(ex)
			return
		}
	}
	if r.Auth == AuthNone || (r.Auth == AuthOptional && len(header) == 0) {
		l.limit(ex)
		return
	}
	raw, ctx := string(header), ex.ctx
	l.offLoop(ex, func() func() {
		claims, err := l.e.g.authenticate(ctx, raw, r)
		return func() {
			if err != nil {
				ex.stats.authFailures.Inc()
				l.fail(ex, err)
				return
			}
			ex.claims = claims
			l.limit(ex)
		}
	})
}

// offLoop runs work in a goroutine, then what it returns on the loop, unless the client has
// gone meanwhile. work must not read ex: the loop owns it.
func (l *loop) offLoop(ex *exchange, work func() func()) {
	ex.waiting = true
	c := ex.c
	go func() {
		then := work()
		l.post(func() {
			if c.closed || c.ex != ex {
				return
			}
			ex.waiting = false
			then()
			l.serveClient(c)
		})
	}()
}

// limit takes a rate-limit token: here from the in-process limiter, off the loop from Redis.
func (l *loop) limit(ex *exchange) {
	r, h := ex.route, &ex.c.head
	if r.RateLimit == "" {
		l.forward(ex)
		return
	}
	apiKey := ""
	if l.e.g.apiKey != "" {
		apiKey = string(h.Get(l.e.g.apiKey))
	}
	ip := ex.client
	if l.e.local != nil {
		a, err := l.e.g.decide(ex.ctx, r, ex.claims, ip, apiKey)
		l.limited(ex, a, err)
		return
	}
	ctx, claims := ex.ctx, ex.claims
	l.offLoop(ex, func() func() {
		a, err := l.e.g.decide(ctx, r, claims, ip, apiKey)
		return func() { l.limited(ex, a, err) }
	})
}

func (l *loop) limited(ex *exchange, a limitAnswer, err error) {
	ex.limits = a
	switch {
	case err == nil:
		l.forward(ex)
	case a.retryAfter != "": // refused: the common answer under a flood, made without errors.As
		l.answerWith(ex, http.StatusTooManyRequests, l.e.g.limitHead[ex.route.RateLimit], "")
	default:
		l.fail(ex, err)
	}
}

// forward sends the request's head to an upstream; its body follows as it arrives.
func (l *loop) forward(ex *exchange) {
	c := ex.c
	if l.bodyAwaited(ex) {
		ex.awaitBody = true
		return
	}
	up := l.e.g.choose(ex.route)
	ex.lu = l.e.ups[up]
	ex.lu.budget.deposit(l.now)
	out := l.upstreamHead(ex, l.takeOut(ex.lu))
	if ex.expect100 {
		// Expect was the gateway's to answer (the upstream gets the body at once).
		c.out = append(c.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
	}
	l.dropHead(ex)
	ex.sent = l.now
	if !l.connect(ex, out, nil) {
		return
	}
	if ex.reqDone {
		l.requestSent(ex)
	}
}

// takeOut is a buffer for an upstream request: an idle connection's own, when one will be
// used, saves a copy.
func (l *loop) takeOut(lu *loopUpstream) []byte {
	if idle := l.idle[lu.index]; len(idle) > 0 {
		u := idle[len(idle)-1]
		return u.out[:0]
	}
	return nil
}

// connect attaches an upstream connection to ex, with out to send: an idle one, else a new
// one. A dial that fails sent nothing, and is tried once more within the retry budget.
func (l *loop) connect(ex *exchange, out []byte, dialErr error) bool {
	lu := ex.lu
	if dialErr == nil {
		for idle := l.idle[lu.index]; len(idle) > 0; idle = l.idle[lu.index] {
			u := idle[len(idle)-1]
			l.idle[lu.index] = idle[:len(idle)-1]
			if u.closed {
				continue
			}
			l.attach(ex, u, out)
			return true
		}
	}
	for {
		if dialErr != nil { // a dial failed: once more, within the budget
			if ex.retried || !lu.budget.withdraw(l.now) {
				if !ex.retried {
					l.e.g.metrics.upstreamRetries.WithLabelValues(lu.addr, "budget_exhausted").Inc()
				}
				l.upstreamFailed(ex, notSent{dialErr})
				return false
			}
			ex.retried = true
			l.e.g.metrics.upstreamRetries.WithLabelValues(lu.addr, "retried").Inc()
		}
		u, err := l.dial(lu)
		if err == nil {
			l.attach(ex, u, out)
			return true
		}
		if errors.Is(err, errUnresolved) && !ex.looked {
			l.lookUp(ex, out)
			return false
		}
		dialErr = err
	}
}

// lookUp resolves ex's upstream off the loop, then connects: once, so that a lookup that
// fails answers 502 with what it said.
func (l *loop) lookUp(ex *exchange, out []byte) {
	ex.looked = true
	lu, ctx := ex.lu, ex.ctx
	l.offLoop(ex, func() func() {
		err := lu.resolveMissing(ctx)
		return func() {
			if err != nil {
				l.upstreamFailed(ex, notSent{fmt.Errorf("dial %s: %w", lu.addr, err)})
				return
			}
			if l.connect(ex, out, nil) && ex.reqDone {
				l.requestSent(ex)
			}
		}
	})
}

func (l *loop) attach(ex *exchange, u *upConn, out []byte) {
	ex.u, u.ex = u, ex
	u.out, u.written = out, 0
}

// dial opens a connection to lu without waiting for it: on loopback it is usually made at
// once, elsewhere EPOLLOUT says when.
func (l *loop) dial(lu *loopUpstream) (*upConn, error) {
	sas := lu.sockaddrs.Load()
	if sas == nil || len(*sas) == 0 {
		return nil, fmt.Errorf("dial %s: %w", lu.addr, errUnresolved)
	}
	// A copy: unix.Connect writes the raw address into the Sockaddr it is given, and the loops
	// share these.
	var sa unix.Sockaddr
	family := unix.AF_INET
	switch a := (*sas)[int(lu.next.Add(1))%len(*sas)].(type) {
	case *unix.SockaddrInet4:
		sa = &unix.SockaddrInet4{Port: a.Port, Addr: a.Addr}
	case *unix.SockaddrInet6:
		sa, family = &unix.SockaddrInet6{Port: a.Port, ZoneId: a.ZoneId, Addr: a.Addr}, unix.AF_INET6
	default:
		return nil, fmt.Errorf("dial %s: unsupported address %T", lu.addr, a)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", lu.addr, err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	u := &upConn{fd: fd, lu: lu, readiness: readiness{writable: true}}
	if err := unix.Connect(fd, sa); err != nil {
		if !errors.Is(err, unix.EINPROGRESS) {
			_ = unix.Close(fd)
			return nil, fmt.Errorf("dial %s: %w", lu.addr, err)
		}
		u.connecting, u.writable = true, false
	}
	if err := l.register(fd, u); err != nil {
		l.forget(fd)
		return nil, fmt.Errorf("dial %s: %w", lu.addr, err)
	}
	return u, nil
}

// requestSent starts the wait for the response head: UPSTREAM_TIMEOUT from the request's end.
func (l *loop) requestSent(ex *exchange) {
	if ex.u != nil && !ex.respHead && l.e.timeout > 0 {
		ex.deadline = l.now.Add(l.e.timeout)
	}
	l.maybeFinish(ex)
}

func (l *loop) dropHead(ex *exchange) {
	if !ex.headDropped {
		ex.headDropped = true
		ex.c.consume(ex.c.head.Size)
	}
}

// event is the upstream connection's readiness.
func (u *upConn) event(l *loop, ev uint32) {
	u.note(ev)
	if u.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
			return
		}
		if errno, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
			if err == nil {
				err = syscall.Errno(errno)
			}
			l.dialFailed(u, err)
			return
		}
		u.connecting = false
	}
	if u.ex == nil { // idle: the upstream may only close it
		if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 || (ev&unix.EPOLLIN != 0 && !u.quiet()) {
			l.closeUp(u)
		}
		return
	}
	ex, c := u.ex, u.ex.c // ex may be finished, and reused, by what follows: c.ex says
	l.flushUp(u)
	if u.ex != nil {
		l.serveUp(u)
	}
	// A request body that waited for room in this connection's buffer goes on.
	if !c.closed && c.ex == ex && !ex.reqDone && !ex.waiting {
		l.serveClient(c)
	}
}

// dialFailed: the connection was refused or never made, so nothing was sent: all of out goes
// to the next try, if the retry rule allows one.
func (l *loop) dialFailed(u *upConn, err error) {
	ex, out := u.ex, u.out
	u.out = nil
	l.closeUp(u)
	if ex == nil {
		return
	}
	c := ex.c
	if l.connect(ex, out, fmt.Errorf("dial %s: %w", u.lu.addr, err)) {
		l.flushUp(ex.u)
	}
	l.flushClient(c)
}

func (l *loop) flushUp(u *upConn) {
	if u.closed || u.connecting || len(u.out) == 0 || u.writeDead {
		return
	}
	before := len(u.out)
	ok := flush(u.fd, &u.out, &u.writable)
	u.written += before - len(u.out)
	if ok {
		return
	}
	ex := u.ex
	if ex != nil && u.written == 0 && !ex.respHead {
		l.dialFailed(u, errors.New("the connection failed before any byte was sent"))
		return
	}
	// The upstream stopped reading: what is left of the body is dropped, and its answer, if
	// it gives one (413, 401…), still read and passed on.
	u.writeDead, u.out = true, nil
	if ex != nil && !ex.reqDone {
		ex.discard = true
	}
	u.readable = true
}

// serveUp reads and passes on what the upstream answered, as far as the client takes it.
func (l *loop) serveUp(u *upConn) {
	ex := u.ex
	if ex == nil || u.closed {
		return
	}
	c := ex.c
	for round := 0; ; round++ {
		for !u.closed && u.ex == ex {
			l.advanceUp(u)
			if u.closed || u.ex != ex || !u.readable || ex.respDone || len(c.out) >= loopMaxPending {
				break
			}
			n := l.readInto(u.fd, &u.in, &u.readable, u.hup)
			if n < 0 {
				l.upstreamEOF(u)
				break
			}
			if n == 0 {
				break
			}
		}
		if c.closed {
			return
		}
		l.flushClient(c)
		// Go on while the flush made room and the upstream has more; otherwise the client's
		// EPOLLOUT or the upstream's EPOLLIN resumes.
		if c.closed || u.closed || u.ex != ex || ex.respDone || len(c.out) >= loopMaxPending || (!u.readable && len(u.in) == 0) {
			return
		}
		if round == loopRounds {
			l.post(func() {
				if u.ex == ex {
					l.serveUp(u)
				}
			})
			return
		}
	}
}

// advanceUp handles the bytes the upstream connection's buffer holds.
func (l *loop) advanceUp(u *upConn) {
	ex := u.ex
	c := ex.c
	for len(u.in) > 0 && u.ex == ex && !c.closed {
		if !ex.respHead {
			ok, err := h1.ParseResponse(u.in, loopRespLimit, responseMethod(ex), &u.head)
			if err == nil && ok && u.head.Body == h1.Tunnel && (ex.upgrade == "" || !bytes.EqualFold(u.head.Get("Upgrade"), []byte(ex.upgrade))) {
				err = errors.New("a switch to a protocol the client did not ask for")
			}
			if err != nil {
				l.upstreamFailed(ex, fmt.Errorf("response: %w", err))
				return
			}
			if !ok {
				return
			}
			if u.head.Status < 200 && u.head.Body != h1.Tunnel { // 100 Continue and other interim answers: Expect was not sent on
				u.in = u.in[:copy(u.in, u.in[u.head.Size:])]
				continue
			}
			l.responseHead(ex, u)
			if ex.respDone {
				l.done(ex)
				return
			}
			continue
		}
		n, done, err := takeBody(ex.respBody, &ex.respLeft, &ex.respChunks, u.in)
		if err != nil {
			l.upstreamFailed(ex, fmt.Errorf("response body: %w", err))
			return
		}
		c.out = append(c.out, u.in[:n]...)
		u.in = u.in[:copy(u.in, u.in[n:])]
		if ex.tunnel {
			c.last = l.now // a tunnel is idle only when neither side speaks
		}
		if done {
			ex.respDone = true
			if len(u.in) > 0 {
				u.spoiled = true
			}
			l.done(ex)
			return
		}
		if len(c.out) >= loopMaxPending {
			return
		}
	}
}

// responseMethod is what framing the response needs of the request's method: whether it
// was HEAD (CONNECT is handed over).
func responseMethod(ex *exchange) []byte {
	if ex.method == http.MethodHead {
		return methodHEAD
	}
	return nil
}

var methodHEAD = []byte(http.MethodHead)

// upstreamEOF: the upstream closed its connection.
func (l *loop) upstreamEOF(u *upConn) {
	ex := u.ex
	if ex.tunnel {
		ex.reqDone, ex.respDone = true, true
		l.closeUp(u)
		ex.c.closeAfter = true // what the upstream sent last still reaches the client first
		l.finish(ex, ex.status)
		return
	}
	if ex.respHead && ex.respBody == h1.UntilClose {
		ex.respDone = true
		l.closeUp(u)
		ex.c.closeAfter = true // the client's copy of the body ends the same way
		l.maybeFinish(ex)
		return
	}
	l.upstreamFailed(ex, errors.New("the upstream closed the connection before its answer was complete"))
}

// responseHead passes the upstream's response head on, rewritten: hop-by-hop fields dropped,
// the gateway's request id and RateLimit fields, the route's header rules.
func (l *loop) responseHead(ex *exchange, u *upConn) {
	h, c, r := &u.head, ex.c, ex.route
	ex.status, ex.respHead, ex.deadline = h.Status, true, time.Time{}
	ex.respBody, ex.respLeft = h.Body, h.Length
	ex.stats.upstreamLatency.Observe(l.now.Sub(ex.sent).Seconds())
	ex.lu.up.Set(1)
	if ex.cspan != nil {
		ex.cspan.SetAttributes(attribute.Int("http.response.status_code", h.Status))
		ex.cspan.End()
		ex.cspan = nil
	}
	closing := ex.clientClose || h.Body == h1.UntilClose || l.e.draining.Load()
	if h.Body == h1.Tunnel {
		ex.upgrade = string(u.head.Get("Upgrade")) // as the upstream spells it
	}
	line := u.in[:bytes.IndexByte(u.in, '\r')]
	b := append(c.out, "HTTP/1.1 "...)
	b = append(b, line[9:]...)
	b = append(b, "\r\n"...)
	named := connectionNamed(h.Fields)
	for _, f := range h.Fields {
		if dropResponseField(f.Name, named, r, ex.limits.policy != "") {
			continue
		}
		b = appendField(b, f.Name, f.Value)
	}
	b = appendField(b, []byte("X-Request-Id"), []byte(ex.id))
	b = appendLimitFields(b, ex.limits)
	for k, v := range r.Response.Add {
		b = appendFieldString(b, k, v)
	}
	if h.Body == h1.Tunnel {
		// Switched: from here both connections carry the new protocol, which the gateway
		// passes on unread; they close together.
		b = append(b, "Connection: Upgrade\r\n"...)
		b = appendFieldString(b, "Upgrade", ex.upgrade)
		ex.tunnel, ex.reqDone, ex.reqBody, ex.respBody = true, false, h1.UntilClose, h1.UntilClose
		closing = false
		if len(c.in) > 0 { // the client spoke the new protocol before the switch was answered
			l.post(func() { l.serveClient(c) })
		}
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	c.out = append(b, "\r\n"...)
	u.in = u.in[:copy(u.in, u.in[h.Size:])]
	if h.Body == h1.NoBody {
		ex.respDone = true
	}
}

// done: the response is through. Its last bytes go to the client before the exchange's
// bookkeeping (finish: metrics, log, span, pool), which is then off the request's path.
func (l *loop) done(ex *exchange) {
	c := ex.c
	if ex.reqDone {
		l.flushClient(c)
		if c.closed || c.ex != ex { // the client failed or was closed: closeClient finished ex
			return
		}
	}
	l.maybeFinish(ex)
}

// maybeFinish ends the exchange once both its request and its response are through. An
// answer that came before the request's end (413, 401…) goes to the client at once; the
// rest of the body is then read and dropped, within drainBytes and drainTime.
func (l *loop) maybeFinish(ex *exchange) {
	if !ex.respDone {
		return
	}
	if !ex.reqDone {
		if !ex.discard {
			ex.discard = true
			ex.drainUntil = l.now.Add(drainTime)
			if ex.u != nil {
				l.closeUp(ex.u) // it answered without the whole body: it cannot take another request
			}
		}
		return
	}
	l.finish(ex, ex.status)
}

// finish records the exchange and frees its connections for the next.
func (l *loop) finish(ex *exchange, status int) {
	c := ex.c
	if u := ex.u; u != nil {
		ex.u, u.ex = nil, nil
		if !u.closed && l.reusable(u) {
			u.idleSince = l.now
			l.release(u.in)
			u.in = nil
			l.idle[u.lu.index] = append(l.idle[u.lu.index], u)
		} else {
			l.closeUp(u)
		}
	}
	if ex.cspan != nil {
		ex.cspan.SetStatus(codes.Error, "no answer")
		ex.cspan.End()
	}
	route := "unmatched"
	switch {
	case ex.route != nil:
		route = ex.route.Name
	case ex.label != "":
		route = ex.label
	}
	l.e.srv.ObserveRequest(ex.method, route, status, time.Since(ex.start))
	if ex.span.IsRecording() {
		ex.span.SetName(ex.method + " " + route)
		ex.span.SetAttributes(attribute.String("http.request.method", ex.method), attribute.String("http.route", route),
			attribute.String("url.path", ex.path), attribute.Int("http.response.status_code", status))
		if status >= 500 {
			ex.span.SetStatus(codes.Error, "")
		}
	}
	ex.span.End()
	l.logRequest(ex, route, status)
	if c.ex == ex {
		c.ex = nil
		if ex.clientClose || l.e.draining.Load() {
			c.closeAfter = true
		}
		if (len(c.in) > 0 || c.readable) && !c.closeAfter && !c.closed {
			// A pipelined request waits: its turn comes on the loop, whoever finished this one.
			// So do bytes, or the client's FIN, whose edge came while the request was in flight
			// and the connection was not read: edges come once.
			l.post(func() { l.serveClient(c) })
		}
	}
	if !ex.waiting { // one still off the loop is left to the collector: its goroutine may yet post
		*ex = exchange{}
		l.exchanges = append(l.exchanges, ex)
	}
}

// newExchange reuses a finished exchange: a flood of requests then allocates none.
func (l *loop) newExchange() *exchange {
	if n := len(l.exchanges); n > 0 {
		ex := l.exchanges[n-1]
		l.exchanges = l.exchanges[:n-1]
		return ex
	}
	return new(exchange)
}

// reusable: the upstream's connection is back to a clean state between messages.
func (l *loop) reusable(u *upConn) bool {
	if u.head.Close || u.writeDead || u.spoiled || len(u.in) > 0 || len(u.out) > 0 || len(l.idle[u.lu.index]) >= loopMaxIdleUp {
		return false
	}
	if u.readable && !u.quiet() { // unread bytes left in the socket would be taken for the next answer
		return false
	}
	return true
}

// quiet reports whether an idle connection has nothing to read: an EPOLLIN edge can come late
// for bytes already read with the last answer (they arrived in two segments and one read took
// both). Bytes, an end of stream or an error mean the connection is done.
func (u *upConn) quiet() bool {
	var b [1]byte
	_, err := sysRead(u.fd, b[:]) // -1 with EAGAIN: the error says it
	if err == unix.EAGAIN {
		u.readable = false
		return true
	}
	return false
}

// upstreamFailed answers 502, or 504 after a timeout; once the response has begun, the
// client's connection is all that can still say something went wrong.
func (l *loop) upstreamFailed(ex *exchange, err error) {
	if ex.u != nil {
		l.closeUp(ex.u)
	}
	ex.stats.upstreamErrors.Inc()
	ex.lu.up.Set(0)
	if ex.cspan != nil {
		ex.cspan.RecordError(err)
		ex.cspan.SetStatus(codes.Error, err.Error())
		ex.cspan.End()
		ex.cspan = nil
	}
	if ex.respHead {
		c := ex.c
		l.finish(ex, ex.status)
		l.closeClient(c)
		return
	}
	ex.deadline = time.Time{}
	if errors.Is(err, errUpstreamTimeout) {
		l.answer(ex, http.StatusGatewayTimeout, "the upstream of route "+ex.route.Name+" did not answer in time", "")
		return
	}
	l.e.logger.WarnContext(ex.ctx, "upstream failed", "route", ex.route.Name, "error", err)
	l.answer(ex, http.StatusBadGateway, "the upstream of route "+ex.route.Name+" is unavailable; retry later", "")
}

// fail answers err as the net/http engine's error handler would.
func (l *loop) fail(ex *exchange, err error) {
	status, detail, challenge := errorAnswer(err)
	l.answer(ex, status, detail, challenge)
}

// answer is the gateway's own problem+json answer to ex.
func (l *loop) answer(ex *exchange, status int, detail, challenge string) {
	l.head = appendProblemHead(l.head[:0], status, detail)
	l.answerWith(ex, status, l.head, challenge)
}

// answerWith answers with a problem whose JSON up to the detail is head.
func (l *loop) answerWith(ex *exchange, status int, head []byte, challenge string) {
	l.scratch = appendProblemTail(append(l.scratch[:0], head...), ex.path, ex.id)
	l.reply(ex, status, web.MIMEProblemJSON, l.scratch, challenge)
}

// reply is every answer the gateway makes itself: a problem, a built-in endpoint's body.
func (l *loop) reply(ex *exchange, status int, contentType string, body []byte, challenge string) {
	c := ex.c
	l.dropHead(ex)
	ex.local, ex.status, ex.respHead, ex.respDone = true, status, true, true
	closing := ex.clientClose || l.e.draining.Load()
	if !ex.reqDone && ex.expect100 && !ex.discard && ex.u == nil {
		// The client waits for 100 Continue before its body: it will not send it now, and
		// whether it closes or sends it after all, only a new connection is clear.
		closing, ex.reqDone = true, true
	}
	c.out = appendResponse(c.out, l.dateField(), status, contentType, ex.id, ex.limits, challenge, closing, body)
	if closing {
		c.closeAfter = true
	}
	l.maybeFinish(ex)
}

// appendResponse appends a whole response of the gateway's own.
func appendResponse(b, date []byte, status int, contentType, id string, limits limitAnswer, challenge string, closing bool, body []byte) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	b = append(b, date...)
	b = appendFieldString(b, "Content-Type", contentType)
	b = appendFieldString(b, "X-Request-Id", id)
	b = appendLimitFields(b, limits)
	if challenge != "" {
		b = appendFieldString(b, "WWW-Authenticate", challenge)
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

func appendLimitFields(b []byte, a limitAnswer) []byte {
	if a.policy != "" {
		b = appendFieldString(b, "RateLimit-Policy", a.policy)
		b = appendFieldString(b, "RateLimit", a.state)
	}
	if a.retryAfter != "" {
		b = appendFieldString(b, "Retry-After", a.retryAfter)
	}
	return b
}

func appendField(b, name, value []byte) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

func appendFieldString(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// connectionNamed are the field names the Connection fields list: hop-by-hop too (RFC 9110
// §7.6.1).
func connectionNamed(fields []h1.Field) [][]byte {
	var named [][]byte
	for _, f := range fields {
		if len(f.Name) != len("Connection") || !bytes.EqualFold(f.Name, []byte("Connection")) {
			continue
		}
		for name := range bytes.SplitSeq(f.Value, []byte(",")) {
			if name = bytes.TrimSpace(name); len(name) > 0 {
				named = append(named, name)
			}
		}
	}
	return named
}

func namedIn(name []byte, named [][]byte) bool {
	for _, n := range named {
		if bytes.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// Request fields the gateway sets itself, or that end at it: hop-by-hop fields, the framing
// fields (the gateway frames what it sends), Expect, and those it writes anew. The identity
// fields only the gateway may set are dropped by isIdentityField.
var requestDropped = append([]string{"Host", "Expect", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id",
	"Content-Length", "Transfer-Encoding"}, hopByHop...)

// Response fields dropped: hop-by-hop ones, and the request id the gateway sets.
var responseDropped = append([]string{"X-Request-Id"}, hopByHop...)

var limitFields = []string{"RateLimit-Policy", "RateLimit", "Retry-After"}

func dropResponseField(name []byte, named [][]byte, r *Route, limited bool) bool {
	if anyEqualFold(name, responseDropped) || anyEqualFold(name, r.Response.Remove) || namedIn(name, named) {
		return true
	}
	if limited && anyEqualFold(name, limitFields) {
		return true
	}
	for k := range r.Response.Add {
		if len(k) == len(name) && bytes.EqualFold(name, []byte(k)) {
			return true
		}
	}
	return false
}

// upstreamHead is the request's head as the upstream gets it: its path rewritten, hop-by-hop
// and identity fields dropped, X-Forwarded-*, the route's header rules, the caller's identity,
// the request id and the trace context.
func (l *loop) upstreamHead(ex *exchange, b []byte) []byte {
	h, r, lu := &ex.c.head, ex.route, ex.lu
	b = append(b, h.Method...)
	b = append(b, ' ')
	b = append(b, lu.path...)
	if r.RewritePrefix != nil {
		b = append(b, strings.ReplaceAll(*r.RewritePrefix+strings.TrimPrefix(ex.path, r.Prefix), "//", "/")...)
	} else {
		b = append(b, ex.path...)
	}
	b = append(b, ex.query...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, lu.host...)
	b = append(b, "\r\n"...)
	named := connectionNamed(h.Fields)
	var host []byte
	for _, f := range h.Fields {
		switch {
		case len(f.Name) == len("X-Forwarded-For") && bytes.EqualFold(f.Name, []byte("X-Forwarded-For")):
			continue // joined below, every field of it
		case len(f.Name) == len("Host") && bytes.EqualFold(f.Name, []byte("Host")):
			host = f.Value
			continue
		case anyEqualFold(f.Name, requestDropped) || anyEqualFold(f.Name, r.Request.Remove) || namedIn(f.Name, named) || isIdentityField(f.Name):
			continue
		case l.e.traced && anyEqualFold(f.Name, l.e.traceHeaders):
			continue
		}
		added := false
		for k := range r.Request.Add {
			if len(k) == len(f.Name) && bytes.EqualFold(f.Name, []byte(k)) {
				added = true
			}
		}
		if !added {
			b = appendField(b, f.Name, f.Value)
		}
	}
	b = append(b, "X-Forwarded-For: "...)
	b = appendForwardedFor(b, ex.c.remote, joinedField(h, "X-Forwarded-For"), l.e.trusted)
	b = append(b, "\r\nX-Forwarded-Proto: http\r\n"...) // the public port is plain HTTP behind the load balancer
	if len(host) > 0 {
		b = appendField(b, []byte("X-Forwarded-Host"), host)
	}
	for k, v := range r.Request.Add {
		b = appendFieldString(b, k, v)
	}
	if ex.claims != nil {
		b = appendFieldString(b, HeaderUserID, ex.claims.Subject)
		b = appendFieldString(b, HeaderUserRoles, strings.Join(ex.claims.Roles, ","))
	}
	b = appendFieldString(b, "X-Request-Id", ex.id)
	// The framing is the gateway's own: what it read, said anew.
	switch h.Body {
	case h1.Length:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, h.Length, 10)
		b = append(b, "\r\n"...)
	case h1.Chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if ex.upgrade != "" { // hop-by-hop, but the one hop it asks for is the upstream's
		b = append(b, "Connection: Upgrade\r\n"...)
		b = appendFieldString(b, "Upgrade", ex.upgrade)
	}
	if l.e.traced {
		cctx := ex.ctx
		if ex.span.IsRecording() {
			cctx, ex.cspan = l.e.tracer.Start(ex.ctx, ex.method+" "+lu.host, trace.WithSpanKind(trace.SpanKindClient))
		}
		fw := fieldWriter{b: b}
		l.e.srv.Tracing.Propagator.Inject(cctx, &fw)
		b = fw.b
	}
	return append(b, "\r\n"...)
}

// joinedField is the values of every field named name, joined with ", " as one list (RFC 9110
// §5.3), or nil; a single field's value is returned as it is.
func joinedField(h *h1.Head, name string) []byte {
	var v []byte
	n := 0
	for _, f := range h.Fields {
		if !equalFoldString(f.Name, name) {
			continue
		}
		if n++; n == 1 {
			v = f.Value
			continue
		}
		if n == 2 {
			v = append([]byte(nil), v...)
		}
		v = append(append(v, ", "...), f.Value...)
	}
	return v
}

// headCarrier lets the trace-context propagator read a request head.
type headCarrier struct{ h *h1.Head }

func (c headCarrier) Get(key string) string { return string(c.h.Get(key)) }
func (c headCarrier) Set(string, string)    {}
func (c headCarrier) Keys() []string {
	keys := make([]string, 0, len(c.h.Fields))
	for _, f := range c.h.Fields {
		keys = append(keys, string(f.Name))
	}
	return keys
}

// fieldWriter lets the propagator write the trace context into an upstream head.
type fieldWriter struct{ b []byte }

func (w *fieldWriter) Get(string) string     { return "" }
func (w *fieldWriter) Set(key, value string) { w.b = appendFieldString(w.b, key, value) }
func (w *fieldWriter) Keys() []string        { return nil }

// closeClient closes a client's connection; an exchange still on it ends with it.
func (l *loop) closeClient(c *clientConn) {
	if c.closed {
		return
	}
	c.closed = true
	if ex := c.ex; ex != nil {
		if ex.u != nil {
			l.closeUp(ex.u)
		}
		status := ex.status
		if !ex.respHead {
			status = statusClientClosed // the client went away first, as nginx records it
		}
		c.ex = nil
		l.finish(ex, status)
	}
	l.forget(c.fd)
	l.e.clients.Add(-1)
	l.release(c.in)
	c.in, c.out = nil, nil
}

func (l *loop) flushClient(c *clientConn) {
	if c.closed {
		return
	}
	if len(c.out) > 0 && !flush(c.fd, &c.out, &c.writable) {
		l.closeClient(c)
		return
	}
	if len(c.out) == 0 && c.closeAfter && (c.ex == nil || c.ex.respDone) {
		_ = unix.Shutdown(c.fd, unix.SHUT_WR) // a FIN after the last answer, then the close
		l.closeClient(c)
	}
}

func (l *loop) closeUp(u *upConn) {
	if u.closed {
		return
	}
	u.closed = true
	if ex := u.ex; ex != nil {
		ex.u, u.ex = nil, nil
	} else { // idle: out of the pool
		idle := l.idle[u.lu.index]
		for i, x := range idle {
			if x == u {
				l.idle[u.lu.index] = append(idle[:i], idle[i+1:]...)
				break
			}
		}
	}
	l.forget(u.fd)
	l.release(u.in)
	u.in, u.out = nil, nil
}

// logRequest writes the request's log line, as the other engines' request loggers do.
func (l *loop) logRequest(ex *exchange, route string, status int) {
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	logger := l.e.logger
	if !logger.Enabled(ex.ctx, level) {
		return
	}
	ip := ex.client
	logger.LogAttrs(ex.ctx, level, "request", slog.String("request_id", ex.id), slog.String("method", ex.method), slog.String("path", ex.path),
		slog.String("route", route), slog.Int("status", status), slog.Duration("latency", time.Since(ex.start)),
		slog.String("remote_ip", ip.String()), slog.String("engine", "loop"))
}
