package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/api"
	"github.com/shopmesh/shopmesh/services/internal/mtls"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// Run starts the gateway and serves until ctx is done.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if cfg, err := LoadConfig(getenv); err == nil && cfg.Engine == "loop" {
		if len(args) > 1 {
			return fmt.Errorf("gateway takes no arguments; configure it with environment variables (see README)")
		}
		return runLoop(ctx, cfg, web.NewLogger(stdout, cfg.HTTP.LogLevel, "gateway"))
	}
	return web.Run(ctx, args, getenv, stdout, "gateway", LoadConfig, func(c Config) web.Config { return c.HTTP }, NewServer)
}

// NewServer builds the gateway from cfg; call the returned func to release it.
func NewServer(ctx context.Context, cfg Config, logger *slog.Logger) (*web.Server, func(), error) {
	srv, _, release, err := newServer(ctx, cfg, logger)
	return srv, release, err
}

// newServer builds the gateway: the echo server of the net/http engine, and the Gateway
// whose routing, tokens and limits both engines use.
func newServer(ctx context.Context, cfg Config, logger *slog.Logger) (*web.Server, *Gateway, func(), error) {
	table := DefaultTable(cfg.UsersURL, cfg.ProductsURL, cfg.OrdersURL, cfg.LoginLimit, cfg.SignupLimit)
	if cfg.RoutesFile != "" {
		t, err := LoadTable(cfg.RoutesFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("ROUTES_FILE: %w", err)
		}
		table = t
	}
	// Every connection net/http serves is read through the framing guard (guard.go), which
	// also keeps the head and body deadlines: net/http's own head timeout is left to it.
	limits := clientLimits{header: cfg.HeaderTimeout, minRate: cfg.BodyMinRate, body: int64(cfg.HTTP.BodyLimitBytes)}
	guard := newGuard(table, limits)
	srv := web.New(cfg.HTTP, logger, web.Proxy(), web.WithConns(web.Conns{Wrap: guard.listener, Context: connContext, GuardsHeads: true}))
	// Client addresses come from the connection unless a trusted proxy forwarded the request;
	// otherwise anyone could pick their own rate-limit key with X-Forwarded-For.
	srv.Echo.IPExtractor = echo.ExtractIPDirect()
	if len(cfg.TrustedProxies) > 0 {
		var trust []echo.TrustOption
		for _, p := range cfg.TrustedProxies {
			_, ipnet, _ := net.ParseCIDR(p.String())
			trust = append(trust, echo.TrustIPRange(ipnet))
		}
		trust = append(trust, echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false))
		srv.Echo.IPExtractor = echo.ExtractIPFromXFFHeader(trust...)
	}

	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256, // Go's default of 2 makes every burst dial anew
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.UpstreamTimeout,
		ForceAttemptHTTP2:     false,
	}
	jwks := http.DefaultTransport.(*http.Transport)
	release := transport.CloseIdleConnections
	if cfg.TLS.Enabled() {
		// The public port stays plain HTTP (TLS ends at the load balancer); mutual TLS is for
		// the upstreams, each of which must prove the identity its route names.
		material, stopTLS, err := mtls.Start(cfg.TLS, logger)
		if err != nil {
			return nil, nil, nil, err
		}
		peers, err := table.upstreamPeers(material.Peer)
		if err == nil {
			jwks, err = material.Transport(jwks, "users")
		}
		if err != nil {
			stopTLS()
			return nil, nil, nil, fmt.Errorf("routes: %w", err)
		}
		transport.DialTLSContext = material.DialTLS(peers, dialer)
		release = func() { transport.CloseIdleConnections(); stopTLS() }
		logger.Info("mTLS to upstreams", "identity", material.ID().String(), "upstreams", len(peers))
	}
	upstreams := newUpstreamTransport(transport)
	closeTLS := release
	release = func() { upstreams.CloseIdleConnections(); closeTLS() }
	var limiter Limiter = NewLocalLimiter(time.Now)
	if cfg.RedisURL != "" {
		var iam *iamAuth
		if cfg.RedisAuth == "iam" {
			u, _ := url.Parse(cfg.RedisURL) // validated by LoadConfig
			a, err := newIAMAuth(ctx, u.User.Username(), cfg.RedisCacheName, cfg.AWSRegion)
			if err != nil {
				return nil, nil, nil, err
			}
			iam = a
		}
		rl, err := newRedisLimiter(cfg.RedisURL, iam, cfg.FailOpen, limiter, srv.Registry, logger)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := rl.instrument(srv.Tracing.Provider); err != nil {
			_ = rl.Close()
			return nil, nil, nil, err
		}
		limiter = rl
		prev := release
		release = func() { prev(); _ = rl.Close() }
		if !cfg.FailOpen { // without Redis this gateway refuses limited routes: not ready
			srv.AddReadinessCheck("redis", rl.Ping)
		} else { // an outage is ridden out locally; a cache that refuses the limiter is not
			srv.AddReadinessCheck("rate-limit-cache", rl.CanDecide)
		}
		logger.Info("rate limits", "shared", true, "fail_open", cfg.FailOpen, "redis_auth", cfg.RedisAuth)
	}
	g := &Gateway{
		table:     table,
		verifier:  cfg.Auth.NewRemoteVerifier(&http.Client{Timeout: 5 * time.Second, Transport: srv.Tracing.Transport(jwks, "users")}),
		limiter:   limiter,
		apiKey:    cfg.APIKeyHeader,
		metrics:   newMetrics(srv.Registry),
		logger:    logger,
		pick:      randomPick,
		tokens:    newTokenCache(100_000, time.Now),
		policyHdr: map[string]string{},
		limitMsg:  map[string]string{},
		limitErr:  map[string]error{},
		limitHead: map[string][]byte{},
		guard:     guard,
		limits:    limits,
		trusted:   cfg.TrustedProxies,
	}
	guard.timeouts = g.metrics.clientTimeouts
	g.upstreams = upstreams
	upstreams.onRetry = func(upstream, outcome string) { g.metrics.upstreamRetries.WithLabelValues(upstream, outcome).Inc() }
	upstreams.health = func(upstream string) func(bool) {
		gauge := g.metrics.upstreamUp.WithLabelValues(upstream)
		return func(answered bool) {
			if answered {
				gauge.Set(1)
			} else {
				gauge.Set(0)
			}
		}
	}
	doc, err := api.Public(func(method, path string) api.Route {
		r := table.Match(method, path)
		return api.Route{Routed: r != nil, Auth: r != nil && r.Auth != AuthNone, Limited: r != nil && r.RateLimit != ""}
	})
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	g.document = doc
	for name, p := range table.RateLimits {
		// draft-ietf-httpapi-ratelimit-headers: quota per 1 s window; burst is our extension.
		g.policyHdr[name] = fmt.Sprintf("%q;q=%g;w=1;burst=%d", name, p.Rate, p.Burst)
		g.limitMsg[name] = fmt.Sprintf("rate limit %q exceeded: %g requests/s with bursts of %d; retry after the Retry-After seconds", name, p.Rate, p.Burst)
		g.limitErr[name] = echo.NewHTTPError(http.StatusTooManyRequests, g.limitMsg[name])
		g.limitHead[name] = appendProblemHead(nil, http.StatusTooManyRequests, g.limitMsg[name])
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      srv.Tracing.ProxyTransport(upstreams, ""),
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		BufferPool:     newBufferPool(),
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	addRoutes(srv.Echo, g)
	if cfg.PprofAddr != "" {
		stop, err := servePprof(cfg.PprofAddr, logger)
		if err != nil {
			release()
			return nil, nil, nil, err
		}
		prev := release
		release = func() { stop(); prev() }
	}
	logger.Info("routes", "count", len(table.Routes), "file", cfg.RoutesFile)
	return srv, g, release, nil
}

// servePprof serves the profiling endpoints on their own listener, apart from the public port.
func servePprof(addr string, logger *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("PPROF_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	logger.Info("pprof", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
