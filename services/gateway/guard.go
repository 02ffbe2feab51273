package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopmesh/shopmesh/services/gateway/h1"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// The net/http engine's connections are read through a guard before net/http reads them: it
// frames the client's bytes with h1, as the event loops do, and applies the same rules
// (framing.go) to every request head, so that both transports accept and refuse the same
// requests. net/http's own parser is more lenient in places (it drops Content-Length beside
// Transfer-Encoding, takes the Transfer-Encoding of HTTP/1.0 for nothing, accepts any Host it
// can print), and the guard refuses those requests before it sees them.
//
// A refused head cannot be answered by the guard itself: net/http may still be answering an
// earlier request on the connection, and the answers must keep their order. So the guard
// hands net/http, in the refused request's place, a request of its own for a path only this
// gateway knows; the handler of that path answers with the refusal and closes the connection,
// after every earlier answer. Bytes after a refused head are never read.

// guard is what a gateway's guarded connections share.
type guard struct {
	table  *Table
	limits clientLimits
	// path is where refusals are answered: random, so that no client can reach it.
	path      string
	synthetic []byte
	timeouts  *prometheus.CounterVec // gateway_client_timeouts_total; nil in tests
	now       func() time.Time
}

func newGuard(table *Table, limits clientLimits) *guard {
	var b [16]byte
	_, _ = rand.Read(b[:])
	path := "/.refused/" + hex.EncodeToString(b[:])
	return &guard{table: table, limits: limits, path: path, now: time.Now,
		synthetic: []byte("GET " + path + " HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")}
}

// listener guards every connection ln accepts.
func (g *guard) listener(ln net.Listener) net.Listener { return guardedListener{ln, g} }

type guardedListener struct {
	net.Listener
	g *guard
}

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.g.conn(c, nil), nil
}

// conn guards c, whose first bytes, already read, are pending.
func (g *guard) conn(c net.Conn, pending []byte) *guardConn {
	return &guardConn{Conn: c, g: g, in: pending}
}

// connContext lets the handlers find a request's guard (http.Server.ConnContext).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if gc, ok := c.(*guardConn); ok {
		return context.WithValue(ctx, guardKey{}, gc)
	}
	return ctx
}

type guardKey struct{}

func guardOf(ctx context.Context) *guardConn {
	gc, _ := ctx.Value(guardKey{}).(*guardConn)
	return gc
}

type guardState uint8

const (
	guardHead    guardState = iota // a request head is next
	guardLength                    // left bytes of a body
	guardChunks                    // a chunked body
	guardTunnel                    // after a request that may switch protocols: bytes pass unread
	guardRefused                   // the synthetic request was handed over: nothing more is read
	guardBroken                    // a body broke its coding, went over the limit or came too slowly
)

// guardConn is a client connection read through the guard.
type guardConn struct {
	net.Conn
	g *guard

	// Read is called by one goroutine at a time (net/http's connection reader); mu guards what
	// the handlers read.
	in     []byte // read from the connection, not judged yet
	out    []byte // judged, for net/http
	state  guardState
	left   int64
	chunks h1.Chunks
	head   h1.Head
	route  *Route // the current request's, for its body limit
	eof    error
	buf    []byte
	// The deadlines the guard keeps: the head's from its first byte, the body's from when its
	// head was read, with what of the body has come.
	headStart, bodyStart time.Time
	bodyRead             int64

	mu      sync.Mutex
	refusal *refusal  // what the synthetic request answers, or why a body was cut off
	bodyCut bool      // the refusal is a body's: net/http had the head
	user    time.Time // net/http's read deadline
	ours    time.Time // the guard's: the sooner of the two applies
}

// errBrokenBody is what net/http reads once a body was cut off (guardBroken).
var errBrokenBody = errors.New("the request body was cut off")

// SetReadDeadline is net/http's deadline; the connection reads by the sooner of it and the
// guard's own.
func (c *guardConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user = t
	return c.Conn.SetReadDeadline(sooner(c.user, c.ours))
}

func (c *guardConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// sooner is the earlier of two deadlines, the zero time being none.
func sooner(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// deadline is the guard's own deadline for the next read: the head's while one is coming, the
// body's minimum rate while one is.
func (c *guardConn) deadline() time.Time {
	switch {
	case c.state == guardHead && !c.bodyStart.IsZero(): // a head read, its body awaited (awaitBody)
		return c.g.limits.bodyDeadline(c.bodyStart, int64(len(c.in)-c.head.Size))
	case c.state == guardHead && !c.headStart.IsZero():
		return c.headStart.Add(c.g.limits.header)
	case c.state == guardLength || c.state == guardChunks:
		return c.g.limits.bodyDeadline(c.bodyStart, c.bodyRead)
	}
	return time.Time{}
}

// cutOff ends the current request with r: in the head's place while net/http has not had it,
// else as a body read error net/http's handler meets (see bodyRefusal).
func (c *guardConn) cutOff(r *refusal, phase string) {
	c.mu.Lock()
	c.refusal, c.bodyCut = r, c.state != guardHead
	c.mu.Unlock()
	if phase != "" && c.g.timeouts != nil {
		c.g.timeouts.WithLabelValues(phase).Inc()
	}
	if c.state == guardHead {
		c.out, c.in, c.state = c.g.synthetic, nil, guardRefused
		return
	}
	c.state, c.in = guardBroken, nil
}

func (c *guardConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(c.out) == 0 {
		switch c.state {
		case guardRefused:
			return 0, errors.New("the connection's last request was refused")
		case guardBroken:
			return 0, errBrokenBody
		case guardTunnel:
			if len(c.in) > 0 {
				c.out, c.in = c.in, nil
				continue
			}
			return c.Conn.Read(p)
		}
		if c.judge() {
			continue
		}
		if c.eof != nil {
			return 0, c.eof
		}
		if c.buf == nil {
			c.buf = make([]byte, 4<<10)
		}
		ours := c.deadline()
		c.mu.Lock()
		c.ours = ours
		_ = c.Conn.SetReadDeadline(sooner(c.user, ours))
		c.mu.Unlock()
		n, err := c.Conn.Read(c.buf)
		c.in = append(c.in, c.buf[:n]...)
		if c.state == guardLength || c.state == guardChunks {
			c.bodyRead += int64(n)
		}
		switch {
		case err == nil:
		case isTimeout(err) && !ours.IsZero() && !c.g.now().Before(ours):
			if c.state == guardHead && c.bodyStart.IsZero() {
				c.cutOff(c.g.limits.headTimeout(), "head")
			} else {
				c.cutOff(c.g.limits.bodyTimeout(), "body")
			}
		case isTimeout(err):
			// net/http's deadline, not an end: it ends its background read with one after
			// every request, and reads on once it has set a new deadline.
			if n == 0 {
				return 0, err
			}
		default:
			c.eof = err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// judge moves what it can of in to out; false when it needs more bytes.
func (c *guardConn) judge() bool {
	switch c.state {
	case guardHead:
		if len(c.in) == 0 {
			return false
		}
		if c.headStart.IsZero() {
			c.headStart = c.g.now()
		}
		ok, err := h1.ParseRequest(c.in, headLimit, &c.head)
		var r *refusal
		switch {
		case err != nil:
			r = parseRefusal(err)
		case !ok:
			return false
		default:
			r = checkRequest(&c.head)
		}
		if r == nil {
			c.route = c.g.route(&c.head)
		}
		if r != nil {
			c.cutOff(r, "")
			return true
		}
		if c.bodyStart.IsZero() {
			c.bodyStart = c.g.now()
		}
		if c.awaitBody() {
			return false // the head goes on once the first of its body is here (bodyBuffer)
		}
		size := c.head.Size
		c.out, c.in = append(c.out, c.in[:size]...), c.in[size:]
		c.headStart = time.Time{}
		switch c.head.Body {
		case h1.Length:
			c.state, c.left = guardLength, c.head.Length
		case h1.Chunked:
			c.state, c.chunks = guardChunks, h1.Chunks{}
		default:
			c.afterBody()
		}
		return true
	case guardLength:
		n := int(min(c.left, int64(len(c.in))))
		if n == 0 {
			return false
		}
		c.out, c.in, c.left = append(c.out, c.in[:n]...), c.in[n:], c.left-int64(n)
		if c.left == 0 {
			c.afterBody()
		}
		return true
	case guardChunks:
		if len(c.in) == 0 {
			return false
		}
		n, done, err := c.chunks.Scan(c.in)
		switch {
		case err != nil:
			c.cutOff(errBadChunks, "")
			return true
		case c.chunks.Data > c.g.limits.bodyLimit(c.route):
			c.cutOff(c.g.limits.tooLarge(c.route), "")
			return true
		}
		c.out, c.in = append(c.out, c.in[:n]...), c.in[n:]
		if done {
			c.afterBody()
		}
		return true
	}
	return false
}

// awaitBody reports whether the head just read waits for its body: until bodyBuffer bytes of
// it (all of a smaller one) are here, net/http does not get the head, so no upstream
// connection is taken for a body that has not come. A client that asked for 100 Continue
// sends nothing before it, so its head goes on at once.
func (c *guardConn) awaitBody() bool {
	h := &c.head
	have := len(c.in) - h.Size
	switch {
	case h.Expect100 || h.Body == h1.NoBody || have >= bodyBuffer:
		return false
	case c.g.limits.checkLength(h, c.route) != nil:
		return false // refused at once by the handler (Gateway.handle), before its body
	case h.Body == h1.Length:
		return int64(have) < h.Length
	}
	trial := h1.Chunks{} // chunked: a body that ends within the buffer goes on whole
	_, done, err := trial.Scan(c.in[h.Size:])
	return !done && err == nil
}

// afterBody: the request in c.head is through. One that may switch protocols (its route allows
// the Upgrade it asks for) leaves the connection's bytes to the tunnel; if the switch does
// not happen, its answer closes the connection (see Gateway.handle).
func (c *guardConn) afterBody() {
	c.state, c.bodyStart, c.bodyRead = guardHead, time.Time{}, 0
	if c.head.Upgrade && c.g.upgradeFor(&c.head) != "" {
		c.state = guardTunnel
	}
}

// upgradeFor is the protocol the request may switch to: the route its target names must list
// its Upgrade (the handler decides on the same route with the same function).
func (g *guard) upgradeFor(h *h1.Head) string {
	return allowedUpgrade(g.route(h), h.Get("Upgrade"))
}

// route is the route the request's target names, as the handler will match it (on the
// decoded path), or nil.
func (g *guard) route(h *h1.Head) *Route {
	u, err := url.ParseRequestURI(string(h.Target))
	if err != nil {
		return nil
	}
	return g.table.Match(string(h.Method), u.Path)
}

// bodyRefusal is why the guard cut off the body of the request ctx belongs to, or nil.
func bodyRefusal(ctx context.Context) *refusal {
	gc := guardOf(ctx)
	if gc == nil {
		return nil
	}
	gc.mu.Lock()
	defer gc.mu.Unlock()
	if gc.bodyCut {
		return gc.refusal
	}
	return nil
}

// refused answers the guard's synthetic request with the refusal it stands for.
func (g *guard) refused(c echo.Context) error {
	r := refuse(http.StatusNotFound, "no route for GET %s", c.Request().URL.Path)
	if gc := guardOf(c.Request().Context()); gc != nil {
		gc.mu.Lock()
		if gc.refusal != nil {
			r = gc.refusal
		}
		gc.mu.Unlock()
	}
	c.Set(web.RouteKey, "refused")
	writeRefusal(c.Response(), r)
	return nil
}

// writeRefusal answers r and closes the connection: the problem document the event loops
// write for it, byte for byte.
func writeRefusal(w http.ResponseWriter, r *refusal) { writeProblemOf(w, r, true) }

// writeProblemOf answers r, closing the connection after it when closing.
func writeProblemOf(w http.ResponseWriter, r *refusal, closing bool) {
	h := w.Header()
	h.Set(echo.HeaderContentType, web.MIMEProblemJSON)
	if closing {
		h.Set(echo.HeaderConnection, "close")
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(appendProblem(nil, r.status, r.detail, "", h.Get(echo.HeaderXRequestID)))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
