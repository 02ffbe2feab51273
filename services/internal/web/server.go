// Package web builds the echo server every shopmesh service runs on: middleware, problem+json
// errors, request binding and validation, Prometheus metrics, health endpoints and graceful
// shutdown.
package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/shopmesh/shopmesh/services/internal/telemetry"
)

// Server is an echo instance with the shopmesh middleware, metrics and health endpoints.
type Server struct {
	Echo     *echo.Echo
	Registry *prometheus.Registry

	cfg    Config
	logger *slog.Logger

	// Tracing is the service's tracer provider: server spans here, client spans in the
	// service's HTTP clients (Tracing.Transport), pgx and Redis spans in their stores.
	Tracing *telemetry.Tracing

	metrics *metrics

	mu       sync.Mutex
	checks   []check
	mtls     *mtlsState
	draining atomic.Bool
	conns    Conns
}

type check struct {
	name string
	fn   func(context.Context) error
}

// MaxRequestIDLen is the longest X-Request-Id taken from a caller; a longer one is replaced.
const MaxRequestIDLen = 128

// Option changes how New builds the server.
type Option func(*options)

type options struct {
	proxy bool
	conns Conns
}

// Conns is how a server reads its connections: Wrap wraps the listener (after TLS, when the
// server ends it), Context adds what a handler may need of a connection to the requests'
// context (http.Server.ConnContext).
type Conns struct {
	Wrap    func(net.Listener) net.Listener
	Context func(context.Context, net.Conn) context.Context
	// GuardsHeads: Wrap's connections time request heads out themselves, and answer 408;
	// net/http's own header timeout, which closes without an answer, is then left out.
	GuardsHeads bool
}

// WithConns makes the server read its connections as c says (the gateway's framing guard).
func WithConns(c Conns) Option { return func(o *options) { o.conns = c } }

// Proxy configures a server that passes requests on (the gateway) rather than handling them:
// bodies of any media type stream through unread, and timeouts are the proxy transport's, so
// the JSON check, body limit and per-request context timeout are left out of the chain.
func Proxy() Option { return func(o *options) { o.proxy = true } }

// New returns a server configured by cfg. Routes are added by the caller on s.Echo.
func New(cfg Config, logger *slog.Logger, opts ...Option) *Server {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.JSONSerializer = strictJSON{}
	e.Validator = validator{}
	e.HTTPErrorHandler = errorHandler(cfg.BodyLimitBytes)

	s := &Server{Echo: e, Registry: prometheus.NewRegistry(), cfg: cfg, logger: logger, conns: o.conns}
	tracing, err := cfg.Telemetry.Start(context.Background())
	if err != nil { // ReadConfig checked the settings; an exporter that cannot even be built is not worth refusing to serve
		logger.Error("tracing off", "error", err)
		tracing = telemetry.Noop()
	} else if cfg.Telemetry.Enabled() {
		logger.Info("tracing", "endpoint", cfg.Telemetry.Endpoint, "protocol", cfg.Telemetry.Protocol, "sampler", cfg.Telemetry.Sampler)
	}
	s.Tracing = tracing
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Order matters: the request id exists before anything logs; metrics sit outside the
	// logger so they see the status the error handler wrote; Recover sits inside the logger so
	// a panic is logged as that request's error.
	// While draining, every response closes its connection, so keep-alive clients move to
	// another replica instead of finding this one gone.
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if s.draining.Load() {
				c.Response().Header().Set(echo.HeaderConnection, "close")
			}
			return next(c)
		}
	})
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			// A caller's request id goes into every log line and upstream: a long one is
			// replaced, as if none had been sent.
			if len(c.Request().Header.Get(echo.HeaderXRequestID)) > MaxRequestIDLen {
				c.Request().Header.Del(echo.HeaderXRequestID)
			}
			return next(c)
		}
	})
	e.Use(middleware.RequestID())
	e.Use(s.traceRequests)
	s.metrics = newMetrics(s.Registry)
	e.Use(s.metrics.middleware)
	e.Use(requestLogger(logger))
	e.Use(middleware.Recover())
	if !o.proxy {
		e.Use(middleware.BodyLimit(bodyLimitString(cfg.BodyLimitBytes)))
		e.Use(requireJSONBody)
		e.Use(middleware.ContextTimeout(cfg.RequestTimeout))
	}

	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", s.ready)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{})))
	return s
}

// ObserveRequest counts a request served outside echo (the gateway's event loops) in the
// same http_requests_total and http_request_duration_seconds.
func (s *Server) ObserveRequest(method, route string, status int, d time.Duration) {
	s.metrics.observe(method, route, status, d)
}

// Ready runs the readiness checks, as /readyz does: nil when all pass.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	s.mu.Lock()
	checks := append([]check(nil), s.checks...)
	s.mu.Unlock()
	for _, ch := range checks {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := ch.fn(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s unreachable: %w", ch.name, err)
		}
	}
	return nil
}

// AddReadinessCheck makes /readyz report 503 while fn fails.
func (s *Server) AddReadinessCheck(name string, fn func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, check{name, fn})
}

func (s *Server) ready(c echo.Context) error {
	if s.draining.Load() {
		return writeProblem(c, Problem{Type: "about:blank", Title: http.StatusText(http.StatusServiceUnavailable),
			Status: http.StatusServiceUnavailable, Instance: c.Request().URL.Path, Detail: "not ready: shutting down"})
	}
	s.mu.Lock()
	checks := append([]check(nil), s.checks...)
	s.mu.Unlock()
	results := map[string]string{}
	var failed []string
	for _, ch := range checks {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		err := ch.fn(ctx)
		cancel()
		if err != nil {
			results[ch.name] = err.Error()
			failed = append(failed, ch.name)
			continue
		}
		results[ch.name] = "ok"
	}
	if len(failed) > 0 {
		p := Problem{Type: "about:blank", Title: http.StatusText(http.StatusServiceUnavailable),
			Status: http.StatusServiceUnavailable, Instance: c.Request().URL.Path,
			Detail: "not ready: " + strings.Join(failed, ", ") + " unreachable"}
		return writeProblem(c, p)
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ready", "checks": results})
}

// ListenAndServe listens on the configured address and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (HTTP_ADDR): %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, drains for ShutdownDrain, then stops accepting
// connections and gives in-flight requests up to ShutdownTimeout to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := s.HTTPServer()
	if s.mtls != nil {
		tlsLn, stop, err := s.serveMTLS(ctx, srv, ln)
		if err != nil {
			return err
		}
		defer stop()
		ln = tlsLn
	}
	if s.conns.Wrap != nil {
		ln = s.conns.Wrap(ln)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.logger.Info("listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Zero-drop restarts: report not ready at once, so that the replica leaves the load
	// balancer's endpoints, but keep serving for the drain time, closing each connection after
	// its response; only then stop listening and give in-flight requests their grace.
	s.draining.Store(true)
	if s.cfg.ShutdownDrain > 0 {
		s.logger.Info("draining", "for", s.cfg.ShutdownDrain.String())
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-time.After(s.cfg.ShutdownDrain):
		}
	}
	s.logger.Info("shutting down", "grace", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	sctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := s.Tracing.Shutdown(sctx2); err != nil { // the last spans
		s.logger.Warn("sending the last spans", "error", err)
	}
	s.logger.Info("stopped")
	return nil
}

// HTTPServer is the http.Server Serve serves with, for connections accepted elsewhere (the
// gateway's event loops hand some over): its handler, timeouts and error log.
func (s *Server) HTTPServer() *http.Server {
	srv := &http.Server{
		Handler:           s.Echo,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		ConnContext:       s.conns.Context,
	}
	if s.conns.GuardsHeads {
		srv.ReadHeaderTimeout = 0
	}
	return srv
}

// Drain starts the drain Serve starts when its context ends: /readyz answers 503 and every
// response closes its connection. For a server whose connections are served elsewhere.
func (s *Server) Drain() { s.draining.Store(true) }

// Bind decodes the JSON body into v and validates it through e.Validator.
func Bind(c echo.Context, v any) error {
	if err := c.Bind(v); err != nil {
		return err
	}
	return c.Validate(v)
}

func requestLogger(logger *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		HandleError:  true, // the error handler writes the response before the line is logged
		LogStatus:    true,
		LogLatency:   true,
		LogMethod:    true,
		LogURIPath:   true,
		LogRoutePath: true,
		LogRequestID: true,
		LogRemoteIP:  true,
		LogError:     true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelInfo
			if v.Status >= 500 {
				level = slog.LevelError
			}
			if !logger.Enabled(c.Request().Context(), level) {
				return nil // don't build a line nobody will read
			}
			attrs := []slog.Attr{
				slog.String("request_id", v.RequestID),
				slog.String("method", v.Method),
				slog.String("path", v.URIPath),
				slog.String("route", RouteOf(c)),
				slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency),
				slog.String("remote_ip", v.RemoteIP),
			}
			if peer, ok := c.Get(PeerKey).(fmt.Stringer); ok {
				attrs = append(attrs, slog.String("peer", peer.String()))
			}
			if v.Error != nil {
				attrs = append(attrs, slog.String("error", v.Error.Error()))
			}
			logger.LogAttrs(c.Request().Context(), level, "request", attrs...) // trace ids: NewLogger's handler
			return nil
		},
	})
}

// requireJSONBody answers 415 for a request body that is not JSON, before any handler runs.
func requireJSONBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength == 0 || req.Body == nil || req.Body == http.NoBody {
			return next(c)
		}
		mediatype, _, _ := strings.Cut(req.Header.Get(echo.HeaderContentType), ";")
		if strings.TrimSpace(strings.ToLower(mediatype)) != echo.MIMEApplicationJSON {
			return echo.ErrUnsupportedMediaType
		}
		return next(c)
	}
}

// Run is the body every service's Run shares: read the configuration, build the server, serve
// until ctx is done, then release what the server holds.
func Run[C any](ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, name string,
	load func(func(string) string) (C, error), httpConfig func(C) Config,
	build func(context.Context, C, *slog.Logger) (*Server, func(), error)) error {
	if len(args) > 1 {
		return fmt.Errorf("%s takes no arguments; configure it with environment variables (see README)", name)
	}
	cfg, err := load(getenv)
	if err != nil {
		return err
	}
	logger := NewLogger(stdout, httpConfig(cfg).LogLevel, name)
	srv, release, err := build(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer release()
	return srv.ListenAndServe(ctx)
}

// Document serves a fixed JSON document: a service's OpenAPI description at /openapi.json.
func Document(doc []byte) echo.HandlerFunc {
	return func(c echo.Context) error { return c.JSONBlob(http.StatusOK, doc) }
}
