package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// inlineTransport is the gateway's HTTP/1.1 client for replayable requests (GET, HEAD,
// OPTIONS, PUT, DELETE without a body that cannot be re-sent). It writes the request and reads
// the response in the calling goroutine over a pooled keep-alive connection. net/http's
// Transport hands every request to two goroutines per connection (writeLoop, readLoop); on
// this hot path those handoffs cost about a quarter of the gateway's throughput. Anything
// else — bodies that cannot be replayed, upgrades — goes to the standard Transport, whose
// careful retry rules a non-idempotent request needs.
type inlineTransport struct {
	std           *http.Transport
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	dialTLS       func(ctx context.Context, network, addr string) (net.Conn, error) // nil: https goes to std
	headerTimeout time.Duration                                                     // until the response headers
	idleTimeout   time.Duration
	maxIdle       int // per upstream address

	mu   sync.Mutex
	idle map[string][]*upstreamConn
}

type upstreamConn struct {
	net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	lastUsed time.Time
}

// newInlineTransport shares std's dialers, header timeout and idle limit per upstream.
func newInlineTransport(std *http.Transport) *inlineTransport {
	return &inlineTransport{std: std, dial: std.DialContext, dialTLS: std.DialTLSContext, headerTimeout: std.ResponseHeaderTimeout,
		idleTimeout: 30 * time.Second, maxIdle: std.MaxIdleConnsPerHost, idle: map[string][]*upstreamConn{}}
}

// replayable requests can be sent again on a fresh connection when a pooled one turns out to
// have been closed by the upstream.
func replayable(req *http.Request) bool {
	return idempotent(req.Method) && (req.Body == nil || req.Body == http.NoBody) && req.Header.Get("Upgrade") == ""
}

func (t *inlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !replayable(req) || (req.URL.Scheme == "https" && t.dialTLS == nil) || (req.URL.Scheme != "http" && req.URL.Scheme != "https") {
		return t.std.RoundTrip(req)
	}
	addr := hostPort(req.URL.Scheme, req.URL.Host)
	key := req.URL.Scheme + "://" + addr
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.conn(req.Context(), req.URL.Scheme, addr, key)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(req, pc, key)
		if err == nil {
			return resp, nil
		}
		// A pooled connection the upstream closed while idle fails at once with nothing
		// received; the request is replayable, so a fresh connection gets it.
		if !reused || attempt > 0 || req.Context().Err() != nil || !closedByPeer(err) {
			return nil, err
		}
	}
}

// exchange sends req on pc and reads the response headers; the body returns pc to the pool
// once read to the end.
func (t *inlineTransport) exchange(req *http.Request, pc *upstreamConn, key string) (*http.Response, error) {
	// A client that goes away, or the header timeout, unblocks the read by expiring the
	// connection's deadline; the connection is then not reused.
	stop := context.AfterFunc(req.Context(), func() { _ = pc.SetDeadline(time.Unix(1, 0)) })
	if t.headerTimeout > 0 {
		_ = pc.SetReadDeadline(time.Now().Add(t.headerTimeout))
	}
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.Close()
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(pc.br, req)
	if err != nil {
		return fail(err)
	}
	_ = pc.SetReadDeadline(time.Time{}) // the body may stream for as long as it takes
	resp.Body = &pooledBody{body: resp.Body, t: t, pc: pc, key: key, stop: stop, keep: !resp.Close && !req.Close}
	return resp, nil
}

// conn returns an idle connection to addr, or dials one.
func (t *inlineTransport) conn(ctx context.Context, scheme, addr, key string) (*upstreamConn, bool, error) {
	now := time.Now()
	t.mu.Lock()
	for list := t.idle[key]; len(list) > 0; list = t.idle[key] {
		pc := list[len(list)-1]
		t.idle[key] = list[:len(list)-1]
		if now.Sub(pc.lastUsed) < t.idleTimeout {
			t.mu.Unlock()
			return pc, true, nil
		}
		pc.Close()
	}
	t.mu.Unlock()
	dial := t.dial
	if scheme == "https" {
		dial = t.dialTLS
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &upstreamConn{Conn: c, br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
}

func (t *inlineTransport) release(key string, pc *upstreamConn) {
	pc.lastUsed = time.Now()
	t.mu.Lock()
	if len(t.idle[key]) < t.maxIdle {
		t.idle[key] = append(t.idle[key], pc)
		pc = nil
	}
	t.mu.Unlock()
	if pc != nil {
		pc.Close()
	}
}

// CloseIdleConnections closes every pooled connection, both transports'.
func (t *inlineTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*upstreamConn{}
	t.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.Close()
		}
	}
	t.std.CloseIdleConnections()
}

// pooledBody hands the connection back once the body has been read to its end, and closes it
// if the reader gives up early.
type pooledBody struct {
	body io.ReadCloser
	t    *inlineTransport
	pc   *upstreamConn
	key  string
	stop func() bool
	keep bool
	done bool
}

func (b *pooledBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if errors.Is(err, io.EOF) {
		b.finish(b.keep)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *pooledBody) Close() error {
	b.finish(false)
	return nil
}

func (b *pooledBody) finish(reuse bool) {
	if b.done {
		return
	}
	b.done = true
	// stop reports false when the context's deadline already fired on the connection.
	if b.stop() && reuse && b.pc.br.Buffered() == 0 {
		b.t.release(b.key, b.pc)
		return
	}
	b.pc.Close()
}

// closedByPeer reports errors that mean a pooled connection was already closed (not a
// timeout: that upstream is slow, and trying again would only double the wait).
func closedByPeer(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var op *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &op)
}

// hostPort adds the scheme's default port when host has none.
func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(host, "443")
	}
	return net.JoinHostPort(host, "80")
}
