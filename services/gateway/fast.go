package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// fastEngine is the gateway's data plane on fasthttp (GATEWAY_ENGINE=fasthttp): the public
// listener and the upstream clients without net/http's per-request goroutine hand-offs and
// allocations, which measured as most of the gateway's cost. Routing, tokens, limits and
// answers are the Gateway's own, shared with the net/http engine.
type fastEngine struct {
	g         *Gateway
	tracer    trace.Tracer
	srv       *web.Server // its registry, request metrics and readiness checks
	upstreams map[*Upstream]*fastUpstream
	traced    bool // false when tracing is off: trace headers then pass through untouched
	trusted   []netip.Prefix
	metrics   fasthttp.RequestHandler
	draining  atomic.Bool
	logger    *slog.Logger
}

// hopByHop are the headers of one connection, never passed on (RFC 9110 §7.6.1), with those
// the Connection header names. Transfer-Encoding is fasthttp's own: it frames bodies itself.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

// requestStripped are removed from every client request besides the hop-by-hop ones: the
// identity headers only the gateway may set, and Expect, which was the gateway's to answer
// (the upstream gets the body at once).
var requestStripped = append(append([]string{"Expect"}, identityHeaders...), hopByHop...)

type headerVisitor interface {
	VisitAll(f func(key, value []byte))
	Del(key string)
}

// headerScan finds the headers stripHeaders removes. Scans are pooled with their visit
// method bound once: a closure per request, and the slice it fills, would be allocations on
// every request.
type headerScan struct {
	names, extra []string
	del          []string
	visit        func(key, value []byte)
}

var headerScans = sync.Pool{New: func() any {
	s := &headerScan{del: make([]string, 0, 8)}
	s.visit = s.see
	return s
}}

func (s *headerScan) see(k, v []byte) {
	if anyEqualFold(k, s.names) || anyEqualFold(k, s.extra) {
		s.del = append(s.del, string(k))
	}
	if len(k) == len("Connection") && bytes.EqualFold(k, []byte("Connection")) {
		for name := range bytes.SplitSeq(v, []byte(",")) {
			if name = bytes.TrimSpace(name); len(name) > 0 && !bytes.EqualFold(name, []byte("close")) && !bytes.EqualFold(name, []byte("keep-alive")) {
				s.del = append(s.del, string(name))
			}
		}
	}
}

// stripHeaders removes the headers named in names and extra, and those the Connection header
// lists, in one pass over h: most requests carry none of them, and each Del is a scan of its
// own.
func stripHeaders(h headerVisitor, names, extra []string) {
	s := headerScans.Get().(*headerScan)
	s.names, s.extra, s.del = names, extra, s.del[:0]
	h.VisitAll(s.visit)
	for _, k := range s.del {
		h.Del(k)
	}
	s.names, s.extra = nil, nil
	clear(s.del)
	headerScans.Put(s)
}

func anyEqualFold(k []byte, names []string) bool {
	for _, n := range names {
		if len(n) == len(k) && bytes.EqualFold(k, []byte(n)) {
			return true
		}
	}
	return false
}

// fastUpstream is what the engine keeps per upstream, looked up once per request.
type fastUpstream struct {
	client *fasthttp.HostClient
	budget *retryBudget
	up     prometheus.Gauge // gateway_upstream_up
	host   string
	path   string // the target URL's path without its trailing slash, prefixed to every request's
}

func newFastEngine(g *Gateway, srv *web.Server, cfg Config, logger *slog.Logger) (*fastEngine, error) {
	e := &fastEngine{g: g, srv: srv, upstreams: map[*Upstream]*fastUpstream{}, traced: srv.Tracing.Records(),
		trusted: cfg.TrustedProxies, logger: logger,
		metrics: fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(srv.Registry, promhttp.HandlerOpts{})),
		tracer:  srv.Tracing.Tracer("shopmesh/gateway-fasthttp")}
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	for i := range g.table.Routes {
		for j := range g.table.Routes[i].Upstreams {
			u := &g.table.Routes[i].Upstreams[j]
			// A failed dial sent nothing: the one kind of failure retried (see do). An https
			// upstream is dialled through the net/http engine's TLS dialer: mutual TLS, with
			// the identity the route names checked, and the handshake done before any byte of
			// the request; fasthttp then speaks HTTP over that connection.
			dial := func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) }
			if u.target.Scheme == "https" {
				dialTLS := g.upstreams.dialTLS
				dial = func(addr string) (net.Conn, error) { return dialTLS(context.Background(), "tcp", addr) }
			}
			client := &fasthttp.HostClient{
				Addr: hostPort(u.target.Scheme, u.target.Host),
				Dial: func(addr string) (net.Conn, error) {
					c, err := dial(addr)
					if err != nil {
						return nil, notSent{err}
					}
					return c, nil
				},
				MaxConns:                  4096,
				MaxIdleConnDuration:       30 * time.Second,
				ReadTimeout:               cfg.UpstreamTimeout,
				MaxIdemponentCallAttempts: 1, // retries are decided here, by the retry rule
				StreamResponseBody:        true,
				NoDefaultUserAgentHeader:  true,
				DisablePathNormalizing:    true,
			}
			e.upstreams[u] = &fastUpstream{client: client, budget: newRetryBudget(time.Now()),
				up:   g.metrics.upstreamUp.WithLabelValues(hostPort(u.target.Scheme, u.target.Host)),
				host: u.target.Host, path: strings.TrimSuffix(u.target.Path, "/")}
		}
	}
	return e, nil
}

func (e *fastEngine) server() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       e.serve,
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		NoDefaultDate:                 false,
		ReadBufferSize:                16 << 10, // the largest request header section accepted: 16 KiB
		StreamRequestBody:             true,     // bodies stream to the upstream, never buffered whole
		DisablePreParseMultipartForm:  true,
		DisableHeaderNamesNormalizing: false,
		ReadTimeout:                   0,
		IdleTimeout:                   90 * time.Second,
		Logger:                        fasthttpLogger{e.logger},
	}
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) { f.l.Warn(fmt.Sprintf(format, args...)) }

func (e *fastEngine) serve(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	method := methodName(ctx.Method())
	path := string(ctx.Path())
	route := "unmatched"
	defer func() { e.srv.ObserveRequest(method, route, ctx.Response.StatusCode(), time.Since(start)) }()
	if e.draining.Load() {
		ctx.SetConnectionClose()
	}
	switch path {
	case "/healthz":
		route = "/healthz"
		e.json(ctx, http.StatusOK, map[string]string{"status": "ok"})
		return
	case "/readyz":
		route = "/readyz"
		e.readiness(ctx)
		return
	case "/metrics":
		route = "/metrics"
		e.metrics(ctx)
		return
	case "/openapi.json":
		if method == http.MethodGet {
			route = "/openapi.json"
			ctx.Response.Header.SetContentType("application/json")
			ctx.SetBody(e.g.document)
			return
		}
	}
	req := &ctx.Request
	id := string(req.Header.Peek(echo.HeaderXRequestID))
	if id == "" || len(id) > 128 {
		id = newRequestID()
	}
	ctx.Response.Header.Set(echo.HeaderXRequestID, id)
	// The server span, a child of the caller's trace context; every span and log line of this
	// request hangs off tctx. With tracing off there is no span to make, and the caller's trace
	// headers go upstream as they came.
	tctx := context.Background()
	span := trace.SpanFromContext(tctx)
	if e.traced {
		tctx = e.srv.Tracing.Propagator.Extract(tctx, fastCarrier{&req.Header})
		tctx, span = e.tracer.Start(tctx, method, trace.WithSpanKind(trace.SpanKindServer))
	}
	defer func() {
		if span.IsRecording() {
			span.SetName(method + " " + route)
			span.SetAttributes(attribute.String("http.request.method", method), attribute.String("http.route", route),
				attribute.String("url.path", path), attribute.Int("http.response.status_code", ctx.Response.StatusCode()))
			if ctx.Response.StatusCode() >= 500 {
				span.SetStatus(codes.Error, "")
			}
		}
		span.End()
		e.logRequest(tctx, id, method, path, route, ctx, start)
	}()
	r := e.g.table.Match(method, path)
	if r == nil {
		e.problem(ctx, http.StatusNotFound, fmt.Sprintf("no route for %s %s", method, path))
		return
	}
	route = r.Name
	stats := e.g.metrics.route(r.Name)
	stripHeaders(&req.Header, requestStripped, r.Request.Remove)
	claims, err := e.authenticate(tctx, req.Header.Peek("Authorization"), r)
	if err != nil {
		stats.authFailures.Inc()
		e.fail(ctx, err)
		return
	}
	var limits limitAnswer
	if r.RateLimit != "" {
		apiKey := ""
		if e.g.apiKey != "" {
			apiKey = string(req.Header.Peek(e.g.apiKey))
		}
		limits, err = e.g.decide(tctx, r, claims, e.clientIP(ctx), apiKey)
		if err != nil {
			setLimitHeaders(&ctx.Response.Header, limits)
			if limits.retryAfter != "" { // refused: the common answer under a flood, made without errors.As
				e.problemFor(ctx, http.StatusTooManyRequests, e.g.limitMsg[r.RateLimit], path, id)
				return
			}
			e.fail(ctx, err)
			return
		}
	}
	up := e.upstreams[e.g.choose(r)]
	e.rewrite(ctx, req, r, up, id)
	if claims != nil {
		req.Header.Set(HeaderUserID, claims.Subject)
		req.Header.Set(HeaderUserRoles, strings.Join(claims.Roles, ","))
	}
	// The client span, when the trace is recorded; either way the trace context goes upstream.
	cctx := tctx
	var cspan trace.Span
	if span.IsRecording() {
		cctx, cspan = e.tracer.Start(tctx, method+" "+up.host, trace.WithSpanKind(trace.SpanKindClient))
	}
	if e.traced {
		e.srv.Tracing.Propagator.Inject(cctx, fastCarrier{&req.Header})
	}
	sent := time.Now()
	// The upstream's response replaces the whole response: the headers the gateway answers
	// with (the request id, RateLimit) are set again below.
	err = e.do(up, req, &ctx.Response)
	if cspan != nil {
		cspan.SetAttributes(attribute.Int("http.response.status_code", ctx.Response.StatusCode()))
		if err != nil {
			cspan.RecordError(err)
			cspan.SetStatus(codes.Error, err.Error())
		}
		cspan.End()
	}
	stats.upstreamLatency.Observe(time.Since(sent).Seconds())
	resp := &ctx.Response
	if err != nil {
		stats.upstreamErrors.Inc()
		resp.Reset()
		resp.Header.Set(echo.HeaderXRequestID, id)
		setLimitHeaders(&resp.Header, limits)
		var ne net.Error
		if errors.Is(err, fasthttp.ErrTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
			e.problem(ctx, http.StatusGatewayTimeout, "the upstream of route "+r.Name+" did not answer in time")
			return
		}
		e.logger.WarnContext(tctx, "upstream failed", "route", r.Name, "error", err)
		e.problem(ctx, http.StatusBadGateway, "the upstream of route "+r.Name+" is unavailable; retry later")
		return
	}
	stripHeaders(&resp.Header, hopByHop, r.Response.Remove)
	resp.Header.Set(echo.HeaderXRequestID, id) // the gateway's request id and RateLimit headers win over the upstream's
	setLimitHeaders(&resp.Header, limits)
	for k, v := range r.Response.Add {
		resp.Header.Set(k, v)
	}
}

func setLimitHeaders(h *fasthttp.ResponseHeader, a limitAnswer) {
	if a.policy != "" {
		h.Set("RateLimit-Policy", a.policy)
		h.Set("RateLimit", a.state)
	}
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
}

// authenticate is the Gateway's, with the common case first: a bearer token already verified
// is found in the cache without copying the header.
func (e *fastEngine) authenticate(ctx context.Context, header []byte, r *Route) (*jwtauth.Claims, error) {
	// The cache holds verified tokens only, which have no spaces: a header the general parser
	// would read differently ("Bearer  t", "Bearer t ") misses here and is parsed there.
	if r.Auth != AuthNone && len(header) > len("Bearer ") && bytes.EqualFold(header[:len("Bearer ")], []byte("Bearer ")) {
		if claims := e.g.tokens.getBytes(header[len("Bearer "):]); claims != nil {
			return claims, nil
		}
	}
	return e.g.authenticate(ctx, string(header), r)
}

// methodName is the request's method as a string that may be kept (metric labels keep it):
// a constant for the standard methods, a copy otherwise.
func methodName(m []byte) string {
	for _, known := range standardMethods {
		if string(m) == known { // no allocation: the compiler compares in place
			return known
		}
	}
	return string(m)
}

var standardMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodPatch, http.MethodOptions}

// rewrite turns the client's request into the upstream's: target, path, forwarding headers,
// the route's header rules.
func (e *fastEngine) rewrite(ctx *fasthttp.RequestCtx, req *fasthttp.Request, r *Route, up *fastUpstream, id string) {
	uri := req.URI()
	if r.RewritePrefix != nil || up.path != "" {
		path := string(uri.Path())
		if r.RewritePrefix != nil {
			path = strings.ReplaceAll(*r.RewritePrefix+strings.TrimPrefix(path, r.Prefix), "//", "/")
		}
		uri.SetPath(up.path + path)
	}
	req.Header.SetBytesV("X-Forwarded-Host", req.Host()) // copied before SetHost changes it
	uri.SetHost(up.host)
	req.Header.SetHost(up.host)
	var buf [64]byte
	xff := buf[:0]
	if prior := req.Header.Peek("X-Forwarded-For"); len(prior) > 0 {
		xff = append(append(xff, prior...), ", "...)
	}
	xff = remoteAddr(ctx).AppendTo(xff)
	req.Header.SetBytesV("X-Forwarded-For", xff)
	req.Header.Set("X-Forwarded-Proto", "http") // the gateway's public port is plain HTTP behind the load balancer
	for k, v := range r.Request.Add {
		req.Header.Set(k, v)
	}
	req.Header.Set(echo.HeaderXRequestID, id)
}

// remoteAddr is the connection's peer address, IPv4 unmapped.
func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}

// do sends req to up under the retry rule: once more, within the upstream's budget, only when
// the dial failed (nothing was sent); never after a timeout.
func (e *fastEngine) do(up *fastUpstream, req *fasthttp.Request, resp *fasthttp.Response) error {
	up.budget.deposit(time.Now())
	err := up.client.Do(req, resp)
	if err != nil && isNotSent(err) && up.budget.withdraw(time.Now()) {
		e.g.metrics.upstreamRetries.WithLabelValues(up.client.Addr, "retried").Inc()
		err = up.client.Do(req, resp)
	}
	if err != nil {
		up.up.Set(0)
	} else {
		up.up.Set(1)
	}
	return err
}

func isNotSent(err error) bool {
	var ns notSent
	return errors.As(err, &ns)
}

// clientIP is the connection's address, or the first untrusted one of X-Forwarded-For when
// the connection comes from TRUSTED_PROXIES.
func (e *fastEngine) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	return realClientIP(remoteAddr(ctx), ctx.Request.Header.Peek("X-Forwarded-For"), e.trusted)
}

func (e *fastEngine) readiness(ctx *fasthttp.RequestCtx) {
	if e.draining.Load() {
		e.problem(ctx, http.StatusServiceUnavailable, "not ready: shutting down")
		return
	}
	if err := e.srv.Ready(ctx); err != nil {
		e.problem(ctx, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	e.json(ctx, http.StatusOK, map[string]string{"status": "ready"})
}

// fail answers err as the net/http engine's error handler would.
func (e *fastEngine) fail(ctx *fasthttp.RequestCtx, err error) {
	status, detail, challenge := errorAnswer(err)
	if challenge != "" {
		ctx.Response.Header.Set("WWW-Authenticate", challenge)
	}
	e.problem(ctx, status, detail)
}

func (e *fastEngine) problem(ctx *fasthttp.RequestCtx, status int, detail string) {
	e.problemFor(ctx, status, detail, string(ctx.Path()), string(ctx.Response.Header.Peek(echo.HeaderXRequestID)))
}

// problemFor answers a problem+json body, the web.Problem the net/http engine answers,
// written without reflection.
func (e *fastEngine) problemFor(ctx *fasthttp.RequestCtx, status int, detail, instance, requestID string) {
	ctx.Response.Header.SetContentType(web.MIMEProblemJSON)
	ctx.SetStatusCode(status)
	buf := problemBufs.Get().(*[]byte)
	*buf = appendProblem((*buf)[:0], status, detail, instance, requestID)
	ctx.SetBody(*buf) // copied
	problemBufs.Put(buf)
}

var problemBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendProblem appends a problem's JSON: the fields of web.Problem the gateway uses, in its
// order, empty ones left out as its omitempty tags do.
func appendProblem(b []byte, status int, detail, instance, requestID string) []byte {
	return appendProblemTail(appendProblemHead(b, status, detail), instance, requestID)
}

// appendProblemHead appends a problem's JSON up to its detail: the part a rate limit's 429s
// share, made once per policy.
func appendProblemHead(b []byte, status int, detail string) []byte {
	b = append(b, `{"type":"about:blank","title":`...)
	b = appendJSONString(b, http.StatusText(status))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	if detail != "" {
		b = append(b, `,"detail":`...)
		b = appendJSONString(b, detail)
	}
	return b
}

// appendProblemTail appends the rest of a problem's JSON after appendProblemHead.
func appendProblemTail(b []byte, instance, requestID string) []byte {
	for _, f := range [...]struct{ key, value string }{{"instance", instance}, {"request_id", requestID}} {
		if f.value != "" {
			b = append(b, ',', '"')
			b = append(b, f.key...)
			b = append(b, '"', ':')
			b = appendJSONString(b, f.value)
		}
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func (e *fastEngine) json(ctx *fasthttp.RequestCtx, status int, v any) {
	b, _ := json.Marshal(v)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
}

// newRequestID is 32 random alphanumerics, as echo's RequestID middleware makes them. An id
// correlates log lines; it guards nothing, so the runtime's fast generator does.
func newRequestID() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [32]byte
	for i := 0; i < len(b); i += 8 {
		r := mrand.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = letters[r%uint64(len(letters))]
			r >>= 8
		}
	}
	return string(b[:])
}

// serveFast serves the engine on addr until ctx is done, then drains as web.Server does:
// /readyz answers 503 and responses close their connections for drain, then the listener
// closes and in-flight requests get grace to finish.
func (e *fastEngine) serveFast(ctx context.Context, ln net.Listener, drain, grace time.Duration) error {
	srv := e.server()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	e.logger.Info("listening", "addr", ln.Addr().String(), "engine", "fasthttp")
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	e.draining.Store(true)
	if drain > 0 {
		time.Sleep(drain)
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	return nil
}

// logRequest writes the request's log line, as the net/http engine's request logger does.
func (e *fastEngine) logRequest(ctx context.Context, id, method, path, route string, rc *fasthttp.RequestCtx, start time.Time) {
	status := rc.Response.StatusCode()
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	if !e.logger.Enabled(ctx, level) {
		return // don't build a line nobody will read
	}
	e.logger.LogAttrs(ctx, level, "request", slog.String("request_id", id), slog.String("method", method), slog.String("path", path),
		slog.String("route", route), slog.Int("status", status), slog.Duration("latency", time.Since(start)),
		slog.String("remote_ip", e.clientIP(rc).String()))
}

// fastCarrier lets the trace-context propagator read and write fasthttp's request headers.
type fastCarrier struct{ h *fasthttp.RequestHeader }

func (c fastCarrier) Get(key string) string { return string(c.h.Peek(key)) }
func (c fastCarrier) Set(key, value string) { c.h.Set(key, value) }
func (c fastCarrier) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}
