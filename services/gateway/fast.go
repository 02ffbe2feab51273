package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// fastEngine is the gateway's data plane on fasthttp (GATEWAY_ENGINE=fasthttp): the public
// listener and the upstream clients without net/http's per-request goroutine hand-offs and
// allocations, which measured as most of the gateway's cost. Routing, tokens, limits and
// answers are the Gateway's own, shared with the net/http engine.
type fastEngine struct {
	g        *Gateway
	tracer   trace.Tracer
	srv      *web.Server // its registry, request metrics and readiness checks
	clients  map[*Upstream]*fasthttp.HostClient
	budgets  map[*Upstream]*retryBudget
	up       map[*Upstream]prometheus.Gauge // gateway_upstream_up, looked up once
	trusted  []netip.Prefix
	metrics  fasthttp.RequestHandler
	draining atomic.Bool
	logger   *slog.Logger
}

// hopByHop are the headers of one connection, never passed on (RFC 9110 §7.6.1), with those
// the Connection header names. Transfer-Encoding is fasthttp's own: it frames bodies itself.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

type headerDeleter interface {
	Peek(key string) []byte
	Del(key string)
}

func dropHopByHop(h headerDeleter) {
	for _, name := range strings.Split(string(h.Peek("Connection")), ",") {
		if name = strings.TrimSpace(name); name != "" && !strings.EqualFold(name, "close") && !strings.EqualFold(name, "keep-alive") {
			h.Del(name)
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

func newFastEngine(g *Gateway, srv *web.Server, cfg Config, logger *slog.Logger) (*fastEngine, error) {
	e := &fastEngine{g: g, srv: srv, clients: map[*Upstream]*fasthttp.HostClient{}, budgets: map[*Upstream]*retryBudget{},
		up:      map[*Upstream]prometheus.Gauge{},
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
			e.clients[u] = &fasthttp.HostClient{
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
			e.budgets[u] = newRetryBudget(time.Now())
			e.up[u] = g.metrics.upstreamUp.WithLabelValues(hostPort(u.target.Scheme, u.target.Host))
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
	method := string(ctx.Method())
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
	}
	id := string(ctx.Request.Header.Peek(echo.HeaderXRequestID))
	if id == "" || len(id) > 128 {
		id = newRequestID()
	}
	ctx.Response.Header.Set(echo.HeaderXRequestID, id)
	// The server span, a child of the caller's trace context; every span and log line of this
	// request hangs off tctx.
	tctx := e.srv.Tracing.Propagator.Extract(context.Background(), fastCarrier{&ctx.Request.Header})
	tctx, span := e.tracer.Start(tctx, method, trace.WithSpanKind(trace.SpanKindServer))
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
	for _, h := range identityHeaders {
		ctx.Request.Header.Del(h)
	}
	claims, err := e.g.authenticate(tctx, string(ctx.Request.Header.Peek("Authorization")), r)
	if err != nil {
		e.g.metrics.authFailures.WithLabelValues(r.Name).Inc()
		e.fail(ctx, err)
		return
	}
	if r.RateLimit != "" {
		apiKey := ""
		if e.g.apiKey != "" {
			apiKey = string(ctx.Request.Header.Peek(e.g.apiKey))
		}
		if err := e.g.decide(tctx, r, claims, e.clientIP(ctx), apiKey, ctx.Response.Header.Set); err != nil {
			e.fail(ctx, err)
			return
		}
	}
	up := e.g.choose(r)
	req := &ctx.Request
	e.rewrite(ctx, req, r, up, id)
	if claims != nil {
		req.Header.Set(HeaderUserID, claims.Subject)
		req.Header.Set(HeaderUserRoles, strings.Join(claims.Roles, ","))
	}
	// The client's answer keeps the headers the gateway set so far (the request id, RateLimit):
	// the upstream's response replaces the whole response.
	var kept [3][2]string
	n := 0
	for _, k := range [...]string{echo.HeaderXRequestID, "RateLimit-Policy", "RateLimit"} {
		if v := ctx.Response.Header.Peek(k); len(v) > 0 {
			kept[n] = [2]string{k, string(v)}
			n++
		}
	}
	// The client span, when the trace is recorded; either way the trace context goes upstream.
	cctx := tctx
	var cspan trace.Span
	if span.IsRecording() {
		cctx, cspan = e.tracer.Start(tctx, method+" "+up.target.Host, trace.WithSpanKind(trace.SpanKindClient))
	}
	e.srv.Tracing.Propagator.Inject(cctx, fastCarrier{&req.Header})
	sent := time.Now()
	err = e.do(up, req, &ctx.Response)
	if cspan != nil {
		cspan.SetAttributes(attribute.Int("http.response.status_code", ctx.Response.StatusCode()))
		if err != nil {
			cspan.RecordError(err)
			cspan.SetStatus(codes.Error, err.Error())
		}
		cspan.End()
	}
	e.g.metrics.upstreamLatency.WithLabelValues(r.Name).Observe(time.Since(sent).Seconds())
	if err != nil {
		e.g.metrics.upstreamErrors.WithLabelValues(r.Name).Inc()
		ctx.Response.Reset()
		for _, kv := range kept[:n] {
			ctx.Response.Header.Set(kv[0], kv[1])
		}
		var ne net.Error
		if errors.Is(err, fasthttp.ErrTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
			e.problem(ctx, http.StatusGatewayTimeout, "the upstream of route "+r.Name+" did not answer in time")
			return
		}
		e.logger.WarnContext(tctx, "upstream failed", "route", r.Name, "error", err)
		e.problem(ctx, http.StatusBadGateway, "the upstream of route "+r.Name+" is unavailable; retry later")
		return
	}
	resp := &ctx.Response
	dropHopByHop(&resp.Header)
	for _, kv := range kept[:n] {
		resp.Header.Set(kv[0], kv[1]) // the gateway's request id and RateLimit headers win over the upstream's
	}
	for _, h := range r.Response.Remove {
		resp.Header.Del(h)
	}
	for k, v := range r.Response.Add {
		resp.Header.Set(k, v)
	}
}

// rewrite turns the client's request into the upstream's: target, path, forwarding headers,
// the route's header rules, no hop-by-hop headers.
func (e *fastEngine) rewrite(ctx *fasthttp.RequestCtx, req *fasthttp.Request, r *Route, up *Upstream, id string) {
	path := string(req.URI().Path())
	if r.RewritePrefix != nil {
		path = strings.ReplaceAll(*r.RewritePrefix+strings.TrimPrefix(path, r.Prefix), "//", "/")
	}
	path = strings.TrimSuffix(up.target.Path, "/") + path
	query := string(req.URI().QueryString())
	clientHost := string(req.Host())
	dropHopByHop(&req.Header)
	// Expect: 100-continue was the gateway's to answer; the upstream gets the body at once.
	req.Header.Del("Expect")
	req.SetRequestURI(path)
	req.URI().SetQueryString(query)
	req.SetHost(up.target.Host)
	req.Header.SetHost(up.target.Host)
	ip := ctx.RemoteIP().String()
	if prior := string(req.Header.Peek("X-Forwarded-For")); prior != "" {
		ip = prior + ", " + ip
	}
	req.Header.Set("X-Forwarded-For", ip)
	req.Header.Set("X-Forwarded-Host", clientHost)
	req.Header.Set("X-Forwarded-Proto", "http") // the gateway's public port is plain HTTP behind the load balancer
	for _, h := range r.Request.Remove {
		req.Header.Del(h)
	}
	for k, v := range r.Request.Add {
		req.Header.Set(k, v)
	}
	req.Header.Set(echo.HeaderXRequestID, id)
}

// do sends req to up under the retry rule: once more, within the upstream's budget, only when
// the dial failed (nothing was sent); never after a timeout.
func (e *fastEngine) do(up *Upstream, req *fasthttp.Request, resp *fasthttp.Response) error {
	budget := e.budgets[up]
	budget.deposit(time.Now())
	err := e.clients[up].Do(req, resp)
	var ns notSent
	if err != nil && errors.As(err, &ns) && budget.withdraw(time.Now()) {
		e.g.metrics.upstreamRetries.WithLabelValues(e.clients[up].Addr, "retried").Inc()
		err = e.clients[up].Do(req, resp)
	}
	if err != nil {
		e.up[up].Set(0)
	} else {
		e.up[up].Set(1)
	}
	return err
}

// clientIP is the connection's address, or the first untrusted one of X-Forwarded-For when
// the connection comes from TRUSTED_PROXIES.
func (e *fastEngine) clientIP(ctx *fasthttp.RequestCtx) string {
	remote, _ := netip.AddrFromSlice(ctx.RemoteIP())
	remote = remote.Unmap()
	if !e.isTrusted(remote) {
		return remote.String()
	}
	parts := strings.Split(string(ctx.Request.Header.Peek("X-Forwarded-For")), ",")
	for i := len(parts) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(parts[i]))
		if err != nil {
			break
		}
		if !e.isTrusted(a) {
			return a.String()
		}
	}
	return remote.String()
}

func (e *fastEngine) isTrusted(a netip.Addr) bool {
	for _, p := range e.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
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
	status := web.StatusOf(err)
	detail := err.Error()
	var he *echo.HTTPError
	var fe *fault.Error
	switch {
	case errors.As(err, &he):
		detail = fmt.Sprint(he.Message)
	case errors.As(err, &fe):
		detail = fe.Message
	}
	if status == http.StatusUnauthorized {
		ctx.Response.Header.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="shopmesh", error="invalid_token", error_description=%q`, detail))
	}
	e.problem(ctx, status, detail)
}

func (e *fastEngine) problem(ctx *fasthttp.RequestCtx, status int, detail string) {
	p := web.Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail,
		Instance: string(ctx.Path()), RequestID: string(ctx.Response.Header.Peek(echo.HeaderXRequestID))}
	b, _ := json.Marshal(p)
	ctx.Response.Header.SetContentType(web.MIMEProblemJSON)
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
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
		slog.String("remote_ip", e.clientIP(rc)))
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
