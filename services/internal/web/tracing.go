package web

import (
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// RouteKey is the echo context key under which a handler may name its route for metrics, logs
// and spans, when echo's path template says nothing (the gateway's catch-all, for one).
const RouteKey = "web.route"

// RouteOf is the route a request matched: the name a handler set under RouteKey, else echo's
// path template.
func RouteOf(c echo.Context) string {
	if r, ok := c.Get(RouteKey).(string); ok && r != "" {
		return r
	}
	return c.Path()
}

// traceRequests makes a server span for every request, a child of the caller's trace context
// (W3C traceparent), and puts it in the request's context for the handlers, the clients they
// call and the request log. Health, readiness and metrics scrapes are not traced.
func (s *Server) traceRequests(next echo.HandlerFunc) echo.HandlerFunc {
	tracer := s.Tracing.Tracer("shopmesh/http-server")
	return func(c echo.Context) error {
		req := c.Request()
		switch req.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			return next(c)
		}
		ctx := s.Tracing.Propagator.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
		ctx, span := tracer.Start(ctx, req.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		c.SetRequest(req.WithContext(ctx))
		err := next(c)
		if span.IsRecording() {
			route := RouteOf(c)
			span.SetName(req.Method + " " + route)
			status := c.Response().Status
			span.SetAttributes(attribute.String("http.request.method", req.Method), attribute.String("http.route", route),
				attribute.String("url.path", req.URL.Path), attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, "")
			}
		}
		return err
	}
}
