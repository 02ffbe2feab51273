package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
)

func read(env map[string]string) (Config, error) {
	r := envconf.New(func(k string) string { return env[k] })
	c := ReadConfig(r, "orders")
	return c, r.Err()
}

func TestReadConfig(t *testing.T) {
	c, err := read(nil)
	if err != nil || c.Enabled() || c.ServiceName != "orders" || c.Sampler != "parentbased_always_on" {
		t.Fatalf("defaults = %+v, %v; want export off, the service's name, parent-based always-on", c, err)
	}
	c, err = read(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_SERVICE_NAME": "orders-canary",
		"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, team=shop%20ops", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG": "0.01"})
	if err != nil || !c.Enabled() || c.Endpoint != "http://collector:4318/v1/traces" || c.ServiceName != "orders-canary" ||
		len(c.Attributes) != 2 || c.Attributes[1].Value.AsString() != "shop ops" || c.SamplerArg != 0.01 {
		t.Errorf("config = %+v, %v", c, err)
	}
	// The signal-specific endpoint is used as is; gRPC takes the base endpoint as is.
	if c, _ := read(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/custom"}); c.Endpoint != "http://x:4318/custom" {
		t.Errorf("traces endpoint = %q", c.Endpoint)
	}
	if c, _ := read(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}); c.Endpoint != "http://x:4317" {
		t.Errorf("grpc endpoint = %q", c.Endpoint)
	}
	if c, _ := read(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"}); c.Enabled() {
		t.Error("OTEL_SDK_DISABLED=true still exports")
	}
	for key, value := range map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_TRACES_SAMPLER": "sometimes",
		"OTEL_TRACES_SAMPLER_ARG": "2", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318", "OTEL_RESOURCE_ATTRIBUTES": "novalue"} {
		if _, err := read(map[string]string{key: value}); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%s: %v; want an error naming it", key, value, err)
		}
	}
}

func TestNoopStillPassesTheTraceContextOn(t *testing.T) {
	tr, err := Config{}.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Traceparent") }))
	defer srv.Close()
	parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := tr.Propagator.Extract(context.Background(), headerCarrier{"traceparent": parent})
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := (&http.Client{Transport: tr.Transport(http.DefaultTransport, "x")}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != parent {
		t.Errorf("traceparent sent = %q, want the caller's %q", got, parent)
	}
}

type headerCarrier map[string]string

func (h headerCarrier) Get(k string) string { return h[k] }
func (h headerCarrier) Set(k, v string)     { h[k] = v }
func (h headerCarrier) Keys() []string {
	var out []string
	for k := range h {
		out = append(out, k)
	}
	return out
}

func TestClientSpansAreChildrenAndPropagate(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	tr := &Tracing{Provider: tp, Propagator: propagator, shutdown: tp.Shutdown}
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Traceparent")
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	ctx, parent := tp.Tracer("test").Start(context.Background(), "handler")
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/reservations", nil)
	req.Header.Set("X-Mine", "1")
	resp, err := (&http.Client{Transport: tr.Transport(http.DefaultTransport, "products")}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	var client sdktrace.ReadOnlySpan
	for _, s := range recorder.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			client = s
		}
	}
	if client == nil || client.Name() != "POST products" || client.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("client span %v, want POST products under the handler's span", client)
	}
	want := "00-" + client.SpanContext().TraceID().String() + "-" + client.SpanContext().SpanID().String() + "-01"
	if got != want || client.Status().Code.String() != "Error" {
		t.Errorf("server saw traceparent %q, want %q (the client span); status %v, want Error for a 502", got, want, client.Status())
	}
	if req.Header.Get("Traceparent") != "" {
		t.Error("the transport changed the caller's request headers")
	}
}

// TestUnsampledTracesCostNoClientSpan: under a parent that is not sampled, the transport makes no
// span and passes the parent's context on, flags and all.
func TestUnsampledTracesCostNoClientSpan(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	tr := &Tracing{Provider: tp, Propagator: propagator, shutdown: tp.Shutdown}
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Traceparent") }))
	defer srv.Close()
	ctx, parent := tp.Tracer("test").Start(context.Background(), "handler")
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := (&http.Client{Transport: tr.Transport(http.DefaultTransport, "x")}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	want := "00-" + parent.SpanContext().TraceID().String() + "-" + parent.SpanContext().SpanID().String() + "-00"
	if got != want || len(recorder.Ended()) != 0 {
		t.Errorf("traceparent %q, %d spans recorded; want %q and none", got, len(recorder.Ended()), want)
	}
}
