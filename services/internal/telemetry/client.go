package telemetry

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Transport wraps base so that each request gets a client span, a child of the span in its
// context, and carries the trace context to the server in traceparent (W3C). The span ends when
// the response headers arrive; peer names the server (products, users…) in span names.
func (t *Tracing) Transport(base http.RoundTripper, peer string) http.RoundTripper {
	return &clientTransport{base: base, tracer: t.Tracer("shopmesh/http-client"), prop: t.Propagator, peer: peer}
}

// ProxyTransport is Transport for requests the caller made and owns, such as a reverse proxy's
// outbound request: the trace context is written into their headers without a copy. With peer
// empty, spans are named by the upstream's host.
func (t *Tracing) ProxyTransport(base http.RoundTripper, peer string) http.RoundTripper {
	return &clientTransport{base: base, tracer: t.Tracer("shopmesh/http-client"), prop: t.Propagator, peer: peer, owned: true}
}

type clientTransport struct {
	base   http.RoundTripper
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	peer   string
	owned  bool
}

func (c *clientTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if parent := trace.SpanFromContext(req.Context()); parent.SpanContext().IsValid() && !parent.IsRecording() {
		// A trace that is not sampled records nothing: pass its context on as it is, without
		// the cost of a span nobody will see (most requests, at a 1 % sampler).
		out := req
		if !c.owned {
			out = req.Clone(req.Context())
		}
		c.prop.Inject(req.Context(), propagation.HeaderCarrier(out.Header))
		return c.base.RoundTrip(out)
	}
	peer := c.peer
	if peer == "" {
		peer = req.URL.Host
	}
	ctx, span := c.tracer.Start(req.Context(), req.Method+" "+peer, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", req.URL.Host),
			attribute.String("url.full", req.URL.Redacted()), attribute.String("peer.service", peer))
	}
	// A RoundTripper must not change the caller's request: the trace context goes on a copy of
	// its headers, unless the request is ours.
	out := req.WithContext(ctx)
	if !c.owned {
		out.Header = req.Header.Clone()
	}
	c.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	resp, err := c.base.RoundTrip(out)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= 500 {
			span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
		}
	}
	return resp, nil
}
