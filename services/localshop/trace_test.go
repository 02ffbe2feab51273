package localshop

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// receivedSpan is a span as an OTLP receiver got it, with its resource's service.name.
type receivedSpan struct {
	service, name         string
	kind                  tracepb.Span_SpanKind
	traceID, id, parentID string
}

// otlpReceiver is an OTLP/HTTP traces endpoint (protobuf, as the exporter sends by default).
type otlpReceiver struct {
	mu    sync.Mutex
	spans []receivedSpan
}

func startReceiver(t *testing.T) (*otlpReceiver, string) {
	r := &otlpReceiver{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var export collectortrace.ExportTraceServiceRequest
		if req.URL.Path != "/v1/traces" || err != nil || proto.Unmarshal(body, &export) != nil {
			http.Error(w, "want an OTLP protobuf export on /v1/traces", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range export.ResourceSpans {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, receivedSpan{service: service, name: s.Name, kind: s.Kind,
						traceID: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId), parentID: hex.EncodeToString(s.ParentSpanId)})
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(ts.Close)
	return r, ts.URL
}

func (r *otlpReceiver) trace(id string) []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receivedSpan
	for _, s := range r.spans {
		if s.traceID == id {
			out = append(out, s)
		}
	}
	return out
}

func (r *otlpReceiver) find(match func(receivedSpan) bool) (receivedSpan, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if match(s) {
			return s, true
		}
	}
	return receivedSpan{}, false
}

// TestOneTracePerOrder: with OTEL_EXPORTER_OTLP_ENDPOINT set, `shopmesh run` exports; an order
// placed through the gateway is one trace, gateway → orders → products, each hop a client span
// and the next service's server span under it, and the three services' log lines for it carry
// its trace id.
func TestOneTracePerOrder(t *testing.T) {
	for _, engine := range []string{"nethttp", "loop"} {
		t.Run(engine, func(t *testing.T) { testOneTracePerOrder(t, engine) })
	}
}

func testOneTracePerOrder(t *testing.T, engine string) {
	receiver, endpoint := startReceiver(t)
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50", "GATEWAY_GATEWAY_ENGINE": engine}
	if engine == "loop" {
		// Plain HTTP between the services, as behind a mesh: the loop engine serves https
		// upstreams through the net/http engine, so only this way do its own spans show.
		env["TLS_MODE"] = "off"
	}
	s := startShop(t, env)
	token, product := customerThroughTheGateway(t, s)
	if r := webtest.Do(t, "POST", s.gateway+"/orders", orderBody(product, 1), webtest.Bearer(token)...); r.Status != 201 {
		t.Fatalf("order: %d %s", r.Status, r.Body)
	}

	var root receivedSpan
	var spans []receivedSpan
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		root, ok = receiver.find(func(s receivedSpan) bool {
			return s.service == "gateway" && s.kind == tracepb.Span_SPAN_KIND_SERVER && s.name == "POST orders-create"
		})
		if ok {
			spans = receiver.trace(root.traceID)
			if byService(spans)["products"] > 0 && byService(spans)["orders"] > 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no complete trace of the order in 10 s; the gateway's server span found: %v; spans %+v", ok, spans)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Walk the chain: each hop's parent is the previous one.
	child := func(parent receivedSpan, service string, kind tracepb.Span_SpanKind, name string) receivedSpan {
		t.Helper()
		for _, s := range spans {
			if s.parentID == parent.id && s.service == service && s.kind == kind && strings.HasPrefix(s.name, name) {
				return s
			}
		}
		t.Fatalf("no %s span of %s under %s/%s; the trace: %+v", kind, service, parent.service, parent.name, spans)
		return receivedSpan{}
	}
	ordersHost := strings.TrimPrefix(strings.TrimPrefix(s.orders, "https://"), "http://")
	gwClient := child(root, "gateway", tracepb.Span_SPAN_KIND_CLIENT, "POST "+ordersHost)
	ordersServer := child(gwClient, "orders", tracepb.Span_SPAN_KIND_SERVER, "POST /orders")
	ordersClient := child(ordersServer, "orders", tracepb.Span_SPAN_KIND_CLIENT, "POST products")
	child(ordersClient, "products", tracepb.Span_SPAN_KIND_SERVER, "POST /reservations")
	for _, sp := range spans {
		if sp.parentID == "" && sp.id != root.id {
			t.Errorf("a second root in the trace: %+v", sp)
		}
	}

	// The request log lines of the three services carry the trace id.
	logged := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Service string `json:"service"`
			TraceID string `json:"trace_id"`
			SpanID  string `json:"span_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.TraceID == root.traceID && line.SpanID != "" {
			logged[line.Service] = true
		}
	}
	for _, svc := range []string{"gateway", "orders", "products"} {
		if !logged[svc] {
			t.Errorf("no %s log line with trace_id %s", svc, root.traceID)
		}
	}
}

func byService(spans []receivedSpan) map[string]int {
	n := map[string]int{}
	for _, s := range spans {
		n[s.service]++
	}
	return n
}
