// Package telemetry sets up each service's OpenTelemetry tracing from the standard OTEL_*
// variables, and gives the HTTP client side of it: client spans and W3C trace-context
// propagation. The server side lives in package web.
//
// The variables are read through the service's configuration reader, not by the SDK from the
// process environment, because `make run` runs four services in one process, each with its own
// name.
package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
)

// Config is the tracing configuration: the OpenTelemetry specification's environment variables.
type Config struct {
	Disabled    bool                 // OTEL_SDK_DISABLED
	Endpoint    string               // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (as is), else OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces over HTTP); empty: no export
	Protocol    string               // OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf (default) or grpc
	Sampler     string               // OTEL_TRACES_SAMPLER
	SamplerArg  float64              // OTEL_TRACES_SAMPLER_ARG: the ratio of the *traceidratio samplers
	ServiceName string               // OTEL_SERVICE_NAME: the service by default
	Attributes  []attribute.KeyValue // OTEL_RESOURCE_ATTRIBUTES: key=value,…
	BatchDelay  time.Duration        // OTEL_BSP_SCHEDULE_DELAY (milliseconds): how often spans are sent
}

var samplers = []string{"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// ReadConfig reads the OTEL_* variables; service is the default service name.
func ReadConfig(r *envconf.Reader, service string) Config {
	c := Config{
		Disabled:    r.Bool("OTEL_SDK_DISABLED", false),
		Protocol:    r.String("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
		Sampler:     r.String("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
		SamplerArg:  r.Float("OTEL_TRACES_SAMPLER_ARG", 1),
		ServiceName: r.String("OTEL_SERVICE_NAME", service),
		BatchDelay:  time.Duration(r.Int("OTEL_BSP_SCHEDULE_DELAY", 5000)) * time.Millisecond,
	}
	switch c.Protocol {
	case "http/protobuf", "grpc":
	default:
		r.Fail("OTEL_EXPORTER_OTLP_PROTOCOL", "must be http/protobuf or grpc, got %q", c.Protocol)
	}
	endpoint := r.String("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	if traces := r.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""); traces != "" {
		c.Endpoint = traces
	} else if endpoint != "" {
		c.Endpoint = endpoint
		if c.Protocol == "http/protobuf" {
			c.Endpoint = strings.TrimSuffix(endpoint, "/") + "/v1/traces"
		}
	}
	if c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			r.Fail("OTEL_EXPORTER_OTLP_ENDPOINT", "must be an http(s) URL such as http://127.0.0.1:4318, got %q", c.Endpoint)
		}
	}
	if !contains(samplers, c.Sampler) {
		r.Fail("OTEL_TRACES_SAMPLER", "must be one of %s, got %q", strings.Join(samplers, ", "), c.Sampler)
	}
	if c.SamplerArg < 0 || c.SamplerArg > 1 {
		r.Fail("OTEL_TRACES_SAMPLER_ARG", "must be a ratio from 0 to 1, got %v", c.SamplerArg)
	}
	if c.BatchDelay <= 0 {
		r.Fail("OTEL_BSP_SCHEDULE_DELAY", "must be a positive number of milliseconds")
	}
	for _, kv := range r.List("OTEL_RESOURCE_ATTRIBUTES") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k, err1 := url.PathUnescape(strings.TrimSpace(k))
		v, err2 := url.PathUnescape(strings.TrimSpace(v))
		if !ok || k == "" || err1 != nil || err2 != nil {
			r.Fail("OTEL_RESOURCE_ATTRIBUTES", "must be key=value pairs separated by commas, got %q", kv)
			continue
		}
		c.Attributes = append(c.Attributes, attribute.String(k, v))
	}
	return c
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Enabled reports whether spans are recorded and exported.
func (c Config) Enabled() bool { return !c.Disabled && c.Endpoint != "" }

// Tracing is a service's tracer provider and propagator.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
	shutdown   func(context.Context) error
}

// Noop traces nothing but still passes an incoming trace context on.
func Noop() *Tracing {
	return &Tracing{Provider: noop.NewTracerProvider(), Propagator: propagator, shutdown: func(context.Context) error { return nil }}
}

// W3C trace context and baggage.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Start builds the tracer provider c describes. Without an endpoint, or with the SDK disabled,
// nothing is recorded, but an incoming trace context is still passed on.
func (c Config) Start(ctx context.Context) (*Tracing, error) {
	if !c.Enabled() {
		return Noop(), nil
	}
	var exporter sdktrace.SpanExporter
	var err error
	if c.Protocol == "grpc" {
		exporter, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(c.Endpoint))
	} else {
		exporter, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.Endpoint))
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter for %s: %w", c.Endpoint, err)
	}
	attrs := append([]attribute.KeyValue{attribute.String("service.name", c.ServiceName)}, c.Attributes...)
	for i, a := range attrs[1:] { // OTEL_SERVICE_NAME wins over a service.name in the attributes
		if a.Key == "service.name" {
			attrs[i+1] = attribute.String("service.name.ignored", a.Value.AsString())
		}
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter, sdktrace.WithBatchTimeout(c.BatchDelay)),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		sdktrace.WithSampler(c.sampler()),
	)
	return &Tracing{Provider: tp, Propagator: propagator, shutdown: tp.Shutdown}, nil
}

func (c Config) sampler() sdktrace.Sampler {
	switch c.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(c.SamplerArg)
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SamplerArg))
	}
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

// Shutdown sends the spans still buffered and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// Records reports whether t can record spans at all: false for Noop, whose only work is to
// pass an incoming trace context on, which a proxy that forwards the headers unchanged does
// without extracting and injecting it.
func (t *Tracing) Records() bool {
	_, isNoop := t.Provider.(noop.TracerProvider)
	return !isNoop
}

// Tracer is this package's instrumentation scope on t's provider.
func (t *Tracing) Tracer(scope string) trace.Tracer { return t.Provider.Tracer(scope) }
