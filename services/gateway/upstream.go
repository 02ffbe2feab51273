package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// upstreamTransport is the gateway's HTTP/1.1 client. It writes a request and reads its
// response in the calling goroutine over a pooled keep-alive connection; a request body is
// written by a second goroutine while the response is read, so an upstream that answers before
// reading the whole body (413, 401…) is heard. net/http's Transport hands every request to two
// goroutines per connection; on this hot path those hand-offs cost about a quarter of the
// gateway's throughput, and it reports a write error instead of such an early answer when the
// upstream's reset arrives first. Only protocol upgrades go to the standard Transport.
//
// Retries follow one rule: a request is sent again only when it provably never reached the
// upstream (the dial failed without timing out, or nothing of it was written), at most once,
// and only while the upstream's retry budget allows. A timeout is never retried: that
// upstream is slow, and trying again would only multiply its load and the client's wait.
type upstreamTransport struct {
	std           *http.Transport
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	dialTLS       func(ctx context.Context, network, addr string) (net.Conn, error)
	headerTimeout time.Duration // from the request's last byte until the response headers
	idleTimeout   time.Duration
	maxIdle       int                            // per upstream address
	onRetry       func(upstream, outcome string) // "retried" or "budget_exhausted"
	// health returns the function told, after each request to upstream, whether it answered.
	health func(upstream string) func(answered bool)
	now    func() time.Time

	mu        sync.Mutex
	idle      map[string][]*upstreamConn
	upstreams map[string]*upstreamState
}

// upstreamState is what the transport keeps per upstream address.
type upstreamState struct {
	budget *retryBudget
	up     func(answered bool)
}

type upstreamConn struct {
	net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	written  int64 // bytes that reached the socket
	lastUsed time.Time
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written += int64(n)
	return n, err
}

// newUpstreamTransport shares std's dialers, header timeout and idle limit per upstream.
func newUpstreamTransport(std *http.Transport) *upstreamTransport {
	t := &upstreamTransport{std: std, dial: std.DialContext, dialTLS: std.DialTLSContext, headerTimeout: std.ResponseHeaderTimeout,
		idleTimeout: 30 * time.Second, maxIdle: std.MaxIdleConnsPerHost, onRetry: func(string, string) {}, now: time.Now,
		health: func(string) func(bool) { return func(bool) {} }, idle: map[string][]*upstreamConn{}, upstreams: map[string]*upstreamState{}}
	if t.dial == nil {
		t.dial = (&net.Dialer{Timeout: 2 * time.Second}).DialContext
	}
	if t.dialTLS == nil { // https upstreams without mutual TLS: verify against the system roots
		t.dialTLS = func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := t.dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			host, _, _ := net.SplitHostPort(addr)
			cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
			if std.TLSClientConfig != nil {
				cfg = std.TLSClientConfig.Clone()
				if cfg.ServerName == "" {
					cfg.ServerName = host
				}
			}
			c := tls.Client(raw, cfg)
			if err := c.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return c, nil
		}
	}
	return t
}

// notSent marks a failure that happened before any byte of the request left the gateway.
type notSent struct{ err error }

func (e notSent) Error() string { return e.err.Error() }
func (e notSent) Unwrap() error { return e.err }

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Upgrade") != "" || (req.URL.Scheme != "http" && req.URL.Scheme != "https") {
		return t.std.RoundTrip(req)
	}
	addr := hostPort(req.URL.Scheme, req.URL.Host)
	key := req.URL.Scheme + "://" + addr
	state := t.state(key, addr)
	state.budget.deposit(t.now())
	for retried := false; ; retried = true {
		resp, err := t.try(req, key, addr)
		if err == nil {
			state.up(true)
			return resp, nil
		}
		if req.Context().Err() == nil { // a client that left says nothing about the upstream
			state.up(false)
		}
		var ns notSent
		if retried || !errors.As(err, &ns) || req.Context().Err() != nil {
			return nil, err
		}
		if !state.budget.withdraw(t.now()) {
			t.onRetry(addr, "budget_exhausted")
			return nil, err
		}
		t.onRetry(addr, "retried")
	}
}

// try sends req once, on a pooled connection or a new one.
func (t *upstreamTransport) try(req *http.Request, key, addr string) (*http.Response, error) {
	pc, err := t.conn(req.Context(), req.URL.Scheme, addr, key)
	if err != nil {
		var ne net.Error
		if req.Context().Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, err
		}
		return nil, notSent{err}
	}
	return t.exchange(req, pc, key)
}

// exchange sends req on pc and reads the response headers; the body returns pc to the pool
// once read to the end.
func (t *upstreamTransport) exchange(req *http.Request, pc *upstreamConn, key string) (*http.Response, error) {
	// A client that goes away unblocks reads and writes by expiring the connection's
	// deadline; the connection is then not reused.
	stop := context.AfterFunc(req.Context(), func() { _ = pc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.Close()
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	// The gateway already has (or is reading) the body, so it asks no 100 Continue of the
	// upstream; RFC 9110 §10.1.1 lets a proxy forward the request either way.
	req.Header.Del("Expect")
	deadline := &headerDeadline{pc: pc, timeout: t.headerTimeout}
	start := pc.written
	var written chan error
	if req.Body == nil || req.Body == http.NoBody {
		err := req.Write(pc.bw)
		if err == nil {
			err = pc.bw.Flush()
		}
		if err != nil {
			if pc.written == start {
				_, _ = fail(err)
				return nil, notSent{err}
			}
			return fail(err)
		}
		deadline.arm()
	} else {
		// Written alongside the read: the upstream may answer before it has read it all.
		written = make(chan error, 1)
		body := &readWatch{ReadCloser: req.Body}
		out := *req // the caller's request is not changed (http.RoundTripper)
		out.Body = body
		go func() {
			err := out.Write(pc.bw)
			if err == nil {
				err = pc.bw.Flush()
			}
			if err == nil {
				deadline.arm()
			}
			if body.err != nil {
				// The client's body failed (it broke its coding, or the client went): the
				// upstream must see an aborted request, not wait for the rest.
				pc.Close()
			}
			written <- err
		}()
	}
	resp, err := readResponse(pc.br, req)
	deadline.disarm()
	if err != nil {
		return fail(err)
	}
	_ = pc.SetReadDeadline(time.Time{}) // the body may stream for as long as it takes
	body := &pooledBody{body: resp.Body, t: t, pc: pc, key: key, stop: stop, keep: !resp.Close && !req.Close}
	if written != nil {
		body.writer = &bodyWriter{result: written}
		if !body.writer.finished() && (resp.StatusCode >= 400 || resp.Close) {
			// An error answer before the whole body was read: stop sending it (RFC 9112 §9.5:
			// "cease transmitting the body"); the upstream's answer stays readable.
			body.writer.early = true
			_ = pc.SetWriteDeadline(time.Unix(1, 0))
		}
	}
	resp.Body = body
	return resp, nil
}

// readWatch remembers a read error of the request body other than its end.
type readWatch struct {
	io.ReadCloser
	err error
}

func (r *readWatch) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		r.err = err
	}
	return n, err
}

// bodyWriter is the result of the goroutine that writes a request body.
type bodyWriter struct {
	result chan error
	early  bool // the upstream answered with an error before the body was written
	done   bool
	err    error
}

func (w *bodyWriter) finished() bool {
	if !w.done {
		select {
		case w.err = <-w.result:
			w.done = true
		default:
		}
	}
	return w.done
}

// wait waits up to d for the writer to stop.
func (w *bodyWriter) wait(d time.Duration) bool {
	if w.finished() {
		return true
	}
	select {
	case w.err = <-w.result:
		w.done = true
	case <-time.After(d):
	}
	return w.done
}

// readResponse reads the final response, skipping interim 1xx ones other than 101.
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode < 100 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, err
		}
	}
}

// headerDeadline starts the response-header timeout once the request is written, as
// http.Transport's ResponseHeaderTimeout does, unless the response already arrived.
type headerDeadline struct {
	mu      sync.Mutex
	pc      *upstreamConn
	timeout time.Duration
	done    bool
}

func (d *headerDeadline) arm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done && d.timeout > 0 {
		_ = d.pc.SetReadDeadline(time.Now().Add(d.timeout))
	}
}

func (d *headerDeadline) disarm() {
	d.mu.Lock()
	d.done = true
	d.mu.Unlock()
}

// conn returns a live idle connection to addr, or dials one. A pooled connection the upstream
// has closed is dropped before anything is written to it.
func (t *upstreamTransport) conn(ctx context.Context, scheme, addr, key string) (*upstreamConn, error) {
	now := t.now()
	for {
		t.mu.Lock()
		list := t.idle[key]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		pc := list[len(list)-1]
		t.idle[key] = list[:len(list)-1]
		t.mu.Unlock()
		if now.Sub(pc.lastUsed) < t.idleTimeout && alive(pc.Conn) {
			return pc, nil
		}
		pc.Close()
	}
	dial := t.dial
	if scheme == "https" {
		dial = t.dialTLS
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	pc := &upstreamConn{Conn: c}
	pc.br, pc.bw = bufio.NewReaderSize(c, 4<<10), bufio.NewWriterSize(pc, 4<<10)
	return pc, nil
}

func (t *upstreamTransport) release(key string, pc *upstreamConn) {
	pc.lastUsed = t.now()
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

func (t *upstreamTransport) state(key, addr string) *upstreamState {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.upstreams[key]
	if st == nil {
		st = &upstreamState{budget: newRetryBudget(t.now()), up: t.health(addr)}
		t.upstreams[key] = st
	}
	return st
}

// CloseIdleConnections closes every pooled connection, both transports'.
func (t *upstreamTransport) CloseIdleConnections() {
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
// if the reader gives up early or the request body was not written in full.
type pooledBody struct {
	body   io.ReadCloser
	t      *upstreamTransport
	pc     *upstreamConn
	key    string
	stop   func() bool
	writer *bodyWriter // nil without a request body
	keep   bool
	done   bool
}

// answeredEarly reports whether the upstream answered with an error before reading the whole
// request body; the gateway then reads the rest of the client's body itself.
func (b *pooledBody) answeredEarly() bool { return b.writer != nil && b.writer.early }

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

// writeWaitBeforeReuse bounds the wait for a request body's writer once its answer is in.
const writeWaitBeforeReuse = 50 * time.Millisecond

func (b *pooledBody) finish(reuse bool) {
	if b.done {
		return
	}
	b.done = true
	if reuse && b.writer != nil && !b.writer.early {
		// The whole answer is in, so the body has gone out unless the upstream answered before
		// reading it all; its writer may only not have said so yet (a goroutine not yet run on
		// a busy machine). Wait for it a little, as net/http does before reusing a connection
		// (maxWriteWaitBeforeConnReuse in net/http/transport.go), rather than spend the
		// connection.
		b.writer.wait(writeWaitBeforeReuse)
	}
	if b.writer != nil && (b.writer.early || !b.writer.finished() || b.writer.err != nil) {
		reuse = false // the body was not sent in full: the connection is spent
	}
	// stop reports false when the context's deadline already fired on the connection.
	if b.stop() && reuse && b.pc.br.Buffered() == 0 {
		b.t.release(b.key, b.pc)
		return
	}
	b.pc.Close()
}

// Retry budget: each request adds retryRatio of a retry, and retryMinPerSecond more come with
// time so that a quiet upstream can still be retried; at most retryBudgetMax are saved up.
// A dead upstream therefore sees at most about 1.1× the attempts it would see without retries.
// (The same idea as Finagle's RetryBudget and Envoy's retry_budget.)
const (
	retryRatio        = 0.1
	retryMinPerSecond = 1.0
	retryBudgetMax    = 10.0
)

type retryBudget struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newRetryBudget(now time.Time) *retryBudget {
	return &retryBudget{tokens: retryBudgetMax, last: now}
}

func (b *retryBudget) refill(now time.Time, add float64) {
	if d := now.Sub(b.last); d > 0 {
		add += d.Seconds() * retryMinPerSecond
		b.last = now
	}
	b.tokens = min(retryBudgetMax, b.tokens+add)
}

func (b *retryBudget) deposit(now time.Time) {
	b.mu.Lock()
	b.refill(now, retryRatio)
	b.mu.Unlock()
}

func (b *retryBudget) withdraw(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now, 0)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
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
