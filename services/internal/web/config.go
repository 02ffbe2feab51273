package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
	"github.com/shopmesh/shopmesh/services/internal/telemetry"
)

// Config is the HTTP part of every service's configuration.
type Config struct {
	Addr            string           // HTTP_ADDR: host:port to listen on
	RequestTimeout  time.Duration    // REQUEST_TIMEOUT: deadline for each request's work
	ShutdownTimeout time.Duration    // SHUTDOWN_TIMEOUT: how long in-flight requests get once the drain is over
	ShutdownDrain   time.Duration    // SHUTDOWN_DRAIN: after SIGTERM, how long to keep serving while /readyz says 503
	BodyLimitBytes  int              // BODY_LIMIT_BYTES: larger request bodies get 413
	LogLevel        slog.Level       // LOG_LEVEL: debug, info, warn or error
	Telemetry       telemetry.Config // OTEL_*: tracing
}

// ReadConfig reads the HTTP and tracing settings of service, with defaultAddr as the listen
// address default.
func ReadConfig(r *envconf.Reader, service, defaultAddr string) Config {
	c := Config{
		Telemetry:       telemetry.ReadConfig(r, service),
		Addr:            r.String("HTTP_ADDR", defaultAddr),
		RequestTimeout:  r.Duration("REQUEST_TIMEOUT", 10*time.Second),
		ShutdownTimeout: r.Duration("SHUTDOWN_TIMEOUT", 15*time.Second),
		ShutdownDrain:   r.Duration("SHUTDOWN_DRAIN", 0),
		BodyLimitBytes:  r.Int("BODY_LIMIT_BYTES", 1<<20),
	}
	if c.BodyLimitBytes <= 0 {
		r.Fail("BODY_LIMIT_BYTES", "must be positive, got %d", c.BodyLimitBytes)
	}
	level := r.String("LOG_LEVEL", "info")
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		r.Fail("LOG_LEVEL", "must be one of debug, info, warn, error; got %q", level)
	}
	return c
}

// NewLogger returns a JSON logger that tags every line with the service name, and every line
// logged with a context (logger.InfoContext, ErrorContext…) with the trace and span ids of the
// span in it, so that a log line leads to its trace.
func NewLogger(w io.Writer, level slog.Level, service string) *slog.Logger {
	return slog.New(traceHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})}).With("service", service)
}

// traceHandler adds trace_id and span_id to records logged with a context that holds a span.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}
func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}

func bodyLimitString(n int) string { return fmt.Sprintf("%dB", n) }

func humanBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return strings.TrimSpace(fmt.Sprintf("%d bytes", n))
}
