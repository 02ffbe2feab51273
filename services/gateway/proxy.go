package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/gateway/h1"
	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// Identity headers the gateway sets for upstreams after verifying a token. Clients cannot set
// them: the gateway removes them from every incoming request first.
const (
	HeaderUserID    = "X-User-Id"
	HeaderUserRoles = "X-User-Roles"
)

var identityHeaders = []string{HeaderUserID, HeaderUserRoles}

// Gateway routes, authenticates, limits and proxies requests.
type Gateway struct {
	table     *Table
	verifier  *jwtauth.Verifier
	limiter   Limiter
	apiKey    string // header naming a client's API key, for rate-limit keys; "" for none
	proxy     *httputil.ReverseProxy
	metrics   *metrics
	logger    *slog.Logger
	pick      func(n int) int
	tokens    *tokenCache
	policyHdr map[string]string
	limitMsg  map[string]string // the 429's detail per policy, made once: floods are answered by the thousand
	limitErr  map[string]error  // the 429 error per policy, shared: never changed once made
	limitHead map[string][]byte // the 429's problem JSON up to its detail, per policy
	document  []byte            // the public API's OpenAPI document, served at /openapi.json
	// upstreams is the net/http engine's client; the event loops hand connections whose
	// route has an https upstream to that engine.
	upstreams *upstreamTransport
	guard     *guard // reads the net/http engine's connections (guard.go)
	limits    clientLimits
	trusted   []netip.Prefix // TRUSTED_PROXIES
}

type ctxKey struct{}

// forward is what the handler decided, for the proxy's Rewrite.
type forward struct {
	route     *Route
	upstream  *Upstream
	claims    *jwtauth.Claims
	requestID string
	start     time.Time
	w         http.ResponseWriter
	in        *http.Request
	upgrade   string // the protocol the route lets this request switch to, or ""
}

// handle serves every request the gateway does not answer itself.
func (g *Gateway) handle(c echo.Context) error {
	req := c.Request()
	route := g.table.Match(req.Method, req.URL.Path)
	if route == nil {
		c.Set(web.RouteKey, "unmatched")
		return fault.New(fault.ErrNotFound, fmt.Sprintf("no route for %s %s", req.Method, req.URL.Path))
	}
	c.Set(web.RouteKey, route.Name) // metrics, logs and spans by route name, not echo's "/*"
	if dotSegments(req.URL.Path) {
		writeRefusal(c.Response(), refuse(http.StatusBadRequest, "a path with dot segments (. or ..): send the path they resolve to"))
		return nil
	}
	if refused := g.limits.checkLength(&h1.Head{Body: h1.Length, Length: req.ContentLength}, route); refused != nil {
		// Answered before its body, which is then read and dropped so that the client is not
		// reset, as after an upstream's early answer.
		writeProblemOf(c.Response(), refused, false)
		drain(c.Response(), req.Body)
		return nil
	}
	for name := range req.Header {
		if isIdentityField([]byte(name)) {
			delete(req.Header, name)
		}
	}
	// An upgrade the route does not list is ignored: the request goes on as plain HTTP/1.1.
	// One it lists closes the connection unless the switch happens: the framing guard has
	// stopped reading the connection's bytes (guard.go, afterBody).
	upgrade := ""
	if hasToken(req.Header["Connection"], "upgrade") && req.Header.Get("Upgrade") != "" {
		upgrade = allowedUpgrade(route, []byte(req.Header.Get("Upgrade")))
	}
	if upgrade == "" {
		req.Header.Del("Upgrade")
	} else {
		c.Response().Header().Set(echo.HeaderConnection, "close")
	}

	claims, err := g.authenticate(req.Context(), req.Header.Get(echo.HeaderAuthorization), route)
	if err != nil {
		g.metrics.route(route.Name).authFailures.Inc()
		return err
	}
	if route.RateLimit != "" {
		if err := g.limit(c, route, claims); err != nil {
			return err
		}
	}

	// The request id middleware put the caller's id, or a new one, on the response only.
	f := &forward{route: route, upstream: g.choose(route), claims: claims, start: time.Now(),
		requestID: c.Response().Header().Get(echo.HeaderXRequestID), w: c.Response(), in: req, upgrade: upgrade}
	g.proxy.ServeHTTP(c.Response(), req.WithContext(context.WithValue(req.Context(), ctxKey{}, f)))
	return nil
}

// authenticate applies the route's auth mode. Verified tokens are cached until they expire,
// so a client's repeated requests, rejected ones included, cost a map lookup.
func (g *Gateway) authenticate(ctx context.Context, header string, route *Route) (*jwtauth.Claims, error) {
	if route.Auth == AuthNone || (route.Auth == AuthOptional && header == "") {
		return nil, nil
	}
	raw, err := jwtauth.BearerToken(header)
	if err != nil {
		return nil, err
	}
	if claims := g.tokens.get(raw); claims != nil {
		return claims, nil
	}
	claims, err := g.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	g.tokens.put(raw, claims)
	return claims, nil
}

// limit takes a token for the client under the route's policy, and answers 429 without one.
func (g *Gateway) limit(c echo.Context, route *Route, claims *jwtauth.Claims) error {
	apiKey := ""
	if g.apiKey != "" {
		apiKey = c.Request().Header.Get(g.apiKey)
	}
	ip, _ := netip.ParseAddr(c.RealIP())
	a, err := g.decide(c.Request().Context(), route, claims, ip, apiKey)
	h := c.Response().Header()
	if a.policy != "" {
		h.Set("RateLimit-Policy", a.policy)
		h.Set("RateLimit", a.state)
	}
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
	return err
}

// limitAnswer is what a rate-limit decision puts on the response: the RateLimit-Policy and
// RateLimit headers, and Retry-After when refused.
type limitAnswer struct{ policy, state, retryAfter string }

// decide takes a token for the client (the token's subject, else the API key, else the
// address; always the address under a by-address policy) and returns the RateLimit headers,
// with the 429 or 503 to answer when it cannot.
func (g *Gateway) decide(ctx context.Context, route *Route, claims *jwtauth.Claims, ip netip.Addr, apiKey string) (limitAnswer, error) {
	policy := g.table.RateLimits[route.RateLimit]
	stats := g.metrics.route(route.Name)
	var key string
	switch {
	case policy.By == LimitByAddress:
		key = route.RateLimit + "|ip:" + ip.String()
	case claims != nil:
		key = route.RateLimit + "|sub:" + claims.Subject
	case apiKey != "":
		key = route.RateLimit + "|key:" + apiKey
	default:
		key = route.RateLimit + "|ip:" + ip.String()
	}
	d, err := g.limiter.Allow(ctx, key, policy)
	if err != nil {
		stats.unavailable.Inc()
		return limitAnswer{}, fault.New(fault.ErrUnavailable, "the rate limiter is unavailable; retry later")
	}
	// "name";r=<remaining>;t=<seconds to full>, built without fmt: this runs on every request.
	var buf [96]byte
	b := strconv.AppendQuote(buf[:0], route.RateLimit)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, int64(ceilSeconds(d.Reset)), 10)
	a := limitAnswer{policy: g.policyHdr[route.RateLimit], state: string(b)}
	if d.Allowed {
		stats.allowed.Inc()
		return a, nil
	}
	stats.limited.Inc()
	stats.rateLimited.Inc()
	a.retryAfter = strconv.Itoa(max(1, ceilSeconds(d.RetryAfter)))
	return a, g.limitErr[route.RateLimit]
}

func ceilSeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// choose picks an upstream by weight (canary releases).
func (g *Gateway) choose(r *Route) *Upstream {
	if len(r.Upstreams) == 1 {
		return &r.Upstreams[0]
	}
	total := 0
	for _, u := range r.Upstreams {
		total += u.Weight
	}
	n := g.pick(total)
	for i := range r.Upstreams {
		if n < r.Upstreams[i].Weight {
			return &r.Upstreams[i]
		}
		n -= r.Upstreams[i].Weight
	}
	return &r.Upstreams[len(r.Upstreams)-1]
}

// rewrite builds the upstream request.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	f := pr.In.Context().Value(ctxKey{}).(*forward)
	target := f.upstream.target
	pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
	path := pr.In.URL.Path
	if f.route.RewritePrefix != nil {
		path = *f.route.RewritePrefix + strings.TrimPrefix(path, f.route.Prefix)
		path = strings.ReplaceAll(path, "//", "/")
	}
	pr.Out.URL.Path = strings.TrimSuffix(target.Path, "/") + path
	pr.Out.URL.RawPath = ""
	pr.Out.Host = target.Host
	pr.Out.Trailer = nil // a request's trailer fields end at the gateway
	pr.SetXForwarded()
	if peer, err := netip.ParseAddrPort(pr.In.RemoteAddr); err == nil { // the loops' rule: appendForwardedFor
		pr.Out.Header.Set("X-Forwarded-For", string(appendForwardedFor(nil, peer.Addr().Unmap(), []byte(strings.Join(pr.In.Header.Values("X-Forwarded-For"), ", ")), g.trusted)))
	}
	for _, h := range f.route.Request.Remove {
		pr.Out.Header.Del(h)
	}
	for k, v := range f.route.Request.Add {
		pr.Out.Header.Set(k, v)
	}
	if f.claims != nil {
		pr.Out.Header.Set(HeaderUserID, f.claims.Subject)
		pr.Out.Header.Set(HeaderUserRoles, strings.Join(f.claims.Roles, ","))
	}
	pr.Out.Header.Set(echo.HeaderXRequestID, f.requestID) // the trace context is the transport's
}

func (g *Gateway) modifyResponse(resp *http.Response) error {
	f := resp.Request.Context().Value(ctxKey{}).(*forward)
	g.metrics.route(f.route.Name).upstreamLatency.Observe(time.Since(f.start).Seconds())
	if b, ok := resp.Body.(*pooledBody); ok && b.answeredEarly() {
		drainRequestBody(f, b.writer)
	}
	if f.upgrade != "" && resp.StatusCode == http.StatusSwitchingProtocols {
		f.w.Header().Del(echo.HeaderConnection) // switched: the tunnel's Connection is the 101's own
	}
	resp.Header.Del(echo.HeaderXRequestID) // the gateway's own is already on the response
	for _, h := range f.route.Response.Remove {
		resp.Header.Del(h)
	}
	for k, v := range f.route.Response.Add {
		resp.Header.Set(k, v)
	}
	return nil
}

// statusClientClosed records an exchange whose client left before its answer (nginx's 499).
const statusClientClosed = 499

// Bounds on reading what is left of a client's request body after the upstream refused it.
const (
	drainBytes = 8 << 20
	drainTime  = 2 * time.Second
)

// drainRequestBody reads and drops the rest of the client's body before the upstream's early
// answer is passed on. net/http closes a connection at once when a body sent after
// "Expect: 100-continue" was not read to its end, and a client still sending then gets a
// reset instead of the answer; with the body read, the connection even stays open. Bodies
// beyond drainBytes or drainTime are left to that close (RFC 9112 §9.6: a "lingering close"
// is the server's best effort, not a guarantee).
func drainRequestBody(f *forward, w *bodyWriter) {
	if f.in.Body == nil || !w.wait(drainTime) { // never read the body from two goroutines
		return
	}
	drain(f.w, f.in.Body)
}

// drain reads and drops what is left of a request body, within drainBytes and drainTime.
func drain(w http.ResponseWriter, body io.Reader) {
	if body == nil {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(drainTime))
	_, _ = io.CopyN(io.Discard, body, drainBytes)
	_ = rc.SetReadDeadline(time.Time{})
}

// proxyError answers 504 when the upstream was too slow and 502 when it failed.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	f, _ := r.Context().Value(ctxKey{}).(*forward)
	name := ""
	if f != nil {
		name = f.route.Name
		g.metrics.route(name).upstreamErrors.Inc()
	}
	if refused := bodyRefusal(r.Context()); refused != nil {
		// The client's body broke its coding, went over the limit or came too slowly: the
		// upstream got an aborted request.
		writeRefusal(w, refused)
		return
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		web.WriteProblem(w, r, http.StatusGatewayTimeout, "the upstream of route "+name+" did not answer in time")
		return
	}
	if errors.Is(err, context.Canceled) {
		// The client went away, or closed its side before the body it declared had come:
		// there is no answer to give it, and the handler must not end with net/http's implicit
		// 200. Recorded as 499, as the event loops and nginx record it, and closed.
		if resp, ok := w.(*echo.Response); ok {
			resp.Status = statusClientClosed
		}
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	g.logger.WarnContext(r.Context(), "upstream failed", "route", name, "error", err)
	web.WriteProblem(w, r, http.StatusBadGateway, "the upstream of route "+name+" is unavailable; retry later")
}

// tokenCache remembers verified tokens until they expire. It is bounded: when full, it starts
// over, which costs only re-verification.
type tokenCache struct {
	mu    sync.RWMutex
	items map[string]*jwtauth.Claims
	max   int
	now   func() time.Time
}

func newTokenCache(max int, now func() time.Time) *tokenCache {
	return &tokenCache{items: map[string]*jwtauth.Claims{}, max: max, now: now}
}

func (c *tokenCache) get(raw string) *jwtauth.Claims {
	c.mu.RLock()
	cl := c.items[raw]
	c.mu.RUnlock()
	if cl == nil || cl.ExpiresAt == nil || !c.now().Before(cl.ExpiresAt.Time) {
		return nil
	}
	return cl
}

// getBytes is get without copying raw: the map lookup converts it in place.
func (c *tokenCache) getBytes(raw []byte) *jwtauth.Claims {
	c.mu.RLock()
	cl := c.items[string(raw)]
	c.mu.RUnlock()
	if cl == nil || cl.ExpiresAt == nil || !c.now().Before(cl.ExpiresAt.Time) {
		return nil
	}
	return cl
}

func (c *tokenCache) put(raw string, cl *jwtauth.Claims) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.items) >= c.max {
		c.items = map[string]*jwtauth.Claims{}
	}
	c.items[raw] = cl
}

func randomPick(n int) int { return mrand.IntN(n) }

// bufferPool reuses the 32 KiB buffers ReverseProxy copies response bodies through; without
// it every response allocates (and the GC clears) a new one.
type bufferPool struct{ pool sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (p *bufferPool) Get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
