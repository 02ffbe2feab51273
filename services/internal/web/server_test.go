package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

type body struct {
	Name string `json:"name"`
}

func (b *body) Validate() error {
	var v fault.Validation
	v.Check(b.Name != "", "name", "is required")
	return v.Err()
}

func testConfig() web.Config {
	return web.Config{Addr: "127.0.0.1:0", RequestTimeout: 100 * time.Millisecond, ShutdownTimeout: 2 * time.Second, BodyLimitBytes: 64}
}

func newServer(t *testing.T) (*web.Server, string) {
	t.Helper()
	s := web.New(testConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	e := s.Echo
	e.POST("/echo", func(c echo.Context) error {
		var b body
		if err := web.Bind(c, &b); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, b)
	})
	for path, err := range map[string]error{
		"/unauthenticated": fault.New(fault.ErrUnauthenticated, "token has expired"),
		"/forbidden":       fault.New(fault.ErrForbidden, "needs admin"),
		"/conflict":        fmt.Errorf("wrapped: %w", fault.New(fault.ErrConflict, "taken")),
		"/unavailable":     fault.New(fault.ErrUnavailable, "db down"),
		"/busy":            fault.Retry(fault.ErrUnavailable, "busy", 1500*time.Millisecond),
		"/too-many":        fault.Retry(fault.ErrTooMany, "slow down", 30*time.Second),
		"/internal":        errors.New("secret connection string in message"),
	} {
		e.GET(path, func(echo.Context) error { return err })
	}
	e.GET("/slow", func(c echo.Context) error {
		<-c.Request().Context().Done()
		return c.Request().Context().Err()
	})
	e.GET("/panic", func(echo.Context) error { panic("boom") })
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func TestErrorsBecomeProblems(t *testing.T) {
	_, base := newServer(t)
	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		header     []string
		wantStatus int
		wantDetail string // a fragment the detail must hold
	}{
		{"ok", "POST", "/echo", `{"name":"a"}`, nil, 200, ""},
		{"malformed JSON", "POST", "/echo", `{"name":`, nil, 400, "JSON"},
		{"wrong type", "POST", "/echo", `{"name":1}`, nil, 400, `"name" must be a string`},
		{"unknown field", "POST", "/echo", `{"name":"a","x":1}`, nil, 400, "unknown field"},
		{"trailing data", "POST", "/echo", `{"name":"a"}{}`, nil, 400, "trailing"},
		{"unauthenticated", "GET", "/unauthenticated", nil, nil, 401, "expired"},
		{"forbidden", "GET", "/forbidden", nil, nil, 403, "admin"},
		{"no route", "GET", "/nowhere", nil, nil, 404, ""},
		{"wrong method", "DELETE", "/echo", nil, nil, 405, ""},
		{"conflict through wrapping", "GET", "/conflict", nil, nil, 409, "taken"},
		{"too large", "POST", "/echo", `{"name":"` + strings.Repeat("x", 100) + `"}`, nil, 413, "64 bytes"},
		{"not JSON", "POST", "/echo", "name=a", []string{"Content-Type", "text/plain"}, 415, "application/json"},
		{"invalid", "POST", "/echo", `{"name":""}`, nil, 422, "invalid fields"},
		{"internal", "GET", "/internal", nil, nil, 500, "request id"},
		{"panic", "GET", "/panic", nil, nil, 500, "request id"},
		{"unavailable", "GET", "/unavailable", nil, nil, 503, "db down"},
		{"busy", "GET", "/busy", nil, nil, 503, "busy"},
		{"too many", "GET", "/too-many", nil, nil, 429, "slow down"},
		{"timeout", "GET", "/slow", nil, nil, 503, "did not finish in time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := webtest.Do(t, tt.method, base+tt.path, tt.body, tt.header...)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if r.Header.Get(echo.HeaderXRequestID) == "" {
				t.Error("no X-Request-Id on the response")
			}
			if r.Status == 200 {
				return
			}
			p := r.Problem(t)
			if !strings.Contains(p.Detail, tt.wantDetail) || p.Title == "" || p.RequestID == "" {
				t.Errorf("problem = %+v; want detail containing %q, a title and a request id", p, tt.wantDetail)
			}
			if strings.Contains(string(r.Body), "secret") || strings.Contains(string(r.Body), "boom") {
				t.Errorf("internal error text leaked to the client: %s", r.Body)
			}
			if r.Status == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("401 without a Bearer challenge: %q", r.Header.Get("WWW-Authenticate"))
			}
			wantRetry := map[string]string{"/busy": "2", "/too-many": "30"}[tt.path]
			if got := r.Header.Get("Retry-After"); got != wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, wantRetry)
			}
			if r.Status == 422 && (len(p.Errors) != 1 || p.Errors[0].Field != "name") {
				t.Errorf("422 does not name the field: %+v", p.Errors)
			}
		})
	}
}

func TestRequestIDIsPropagated(t *testing.T) {
	_, base := newServer(t)
	r := webtest.Do(t, "GET", base+"/forbidden", nil, echo.HeaderXRequestID, "req-123")
	if got := r.Header.Get(echo.HeaderXRequestID); got != "req-123" {
		t.Errorf("X-Request-Id = %q, want the caller's", got)
	}
	if p := r.Problem(t); p.RequestID != "req-123" {
		t.Errorf("problem request_id = %q", p.RequestID)
	}
}

// TestLongRequestIDsAreReplaced: a caller's id goes into every log line and upstream, so one
// longer than MaxRequestIDLen is replaced by a new one, as if none had been sent.
func TestLongRequestIDsAreReplaced(t *testing.T) {
	_, base := newServer(t)
	for _, tt := range []struct {
		id   string
		kept bool
	}{{strings.Repeat("a", web.MaxRequestIDLen), true}, {strings.Repeat("a", web.MaxRequestIDLen+1), false}} {
		r := webtest.Do(t, "GET", base+"/forbidden", nil, echo.HeaderXRequestID, tt.id)
		got := r.Header.Get(echo.HeaderXRequestID)
		if (got == tt.id) != tt.kept || got == "" {
			t.Errorf("X-Request-Id of %d bytes answered with %q, want kept %v (else a new one)", len(tt.id), got, tt.kept)
		}
	}
}

func TestMetricsCountByRouteAndStatus(t *testing.T) {
	_, base := newServer(t)
	for i := 0; i < 3; i++ {
		webtest.Do(t, "POST", base+"/echo", `{"name":"a"}`)
	}
	webtest.Do(t, "GET", base+"/nowhere/"+strings.Repeat("x", 10), nil)
	m := string(webtest.Do(t, "GET", base+"/metrics", nil).Body)
	for _, want := range []string{
		`http_requests_total{method="POST",route="/echo",status="200"} 3`,
		`http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`http_request_duration_seconds_bucket{method="POST",route="/echo",status="200",le="+Inf"} 3`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestReadiness(t *testing.T) {
	s, base := newServer(t)
	if r := webtest.Do(t, "GET", base+"/readyz", nil); r.Status != 200 {
		t.Fatalf("/readyz with no checks = %d", r.Status)
	}
	var fail error = errors.New("refused")
	s.AddReadinessCheck("postgres", func(context.Context) error { return fail })
	r := webtest.Do(t, "GET", base+"/readyz", nil)
	if r.Status != 503 || !strings.Contains(r.Problem(t).Detail, "postgres") {
		t.Errorf("/readyz with a failing check = %d %s; want 503 naming postgres", r.Status, r.Body)
	}
	fail = nil
	if r := webtest.Do(t, "GET", base+"/readyz", nil); r.Status != 200 {
		t.Errorf("/readyz after recovery = %d", r.Status)
	}
	if r := webtest.Do(t, "GET", base+"/healthz", nil); r.Status != 200 {
		t.Errorf("/healthz = %d", r.Status)
	}
}

// TestShutdownFinishesInFlightRequests: a request that is running when the server is told to
// stop still gets its answer.
func TestShutdownFinishesInFlightRequests(t *testing.T) {
	cfg := testConfig()
	cfg.RequestTimeout = 5 * time.Second
	s := web.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	started := make(chan struct{})
	s.Echo.GET("/work", func(c echo.Context) error {
		close(started)
		time.Sleep(300 * time.Millisecond)
		return c.String(http.StatusOK, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/work")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-started
	cancel()
	r := <-got
	if r.err != nil || r.status != 200 || r.body != "done" {
		t.Errorf("in-flight request = %+v; want 200 done", r)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want a clean stop", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
}

// TestDrainKeepsServingWhileNotReady: after SIGTERM (ctx done) the server answers /readyz 503
// at once, keeps serving requests for ShutdownDrain with Connection: close, then stops.
func TestDrainKeepsServingWhileNotReady(t *testing.T) {
	cfg := testConfig()
	cfg.ShutdownDrain = 400 * time.Millisecond
	s := web.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.Echo.GET("/work", func(c echo.Context) error { return c.String(http.StatusOK, "done") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	if r := webtest.Do(t, "GET", base+"/work", nil); r.Status != 200 {
		t.Fatalf("before SIGTERM: %d", r.Status)
	}
	stopped := time.Now()
	cancel()
	time.Sleep(50 * time.Millisecond)
	if r := webtest.Do(t, "GET", base+"/readyz", nil); r.Status != 503 || !strings.Contains(r.Problem(t).Detail, "shutting down") {
		t.Errorf("/readyz while draining = %d %s; want 503 shutting down", r.Status, r.Body)
	}
	resp, err := http.Get(base + "/work")
	if err != nil {
		t.Fatalf("a request while draining: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close { // net/http turns "Connection: close" into Close
		t.Errorf("a request while draining = %d, close %v; want 200 and Connection: close", resp.StatusCode, resp.Close)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if d := time.Since(stopped); d < cfg.ShutdownDrain {
		t.Errorf("stopped %v after SIGTERM, before the %v drain was over", d, cfg.ShutdownDrain)
	}
}

// TestLogLinesCarryTheTrace: any line logged with a context that holds a span — error lines
// included — carries its trace and span ids.
func TestLogLinesCarryTheTrace(t *testing.T) {
	var buf bytes.Buffer
	logger := web.NewLogger(&buf, slog.LevelInfo, "orders")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	logger.ErrorContext(ctx, "release reservation after failed order", "order_id", "o-1")
	logger.Error("no context, no ids")
	span.End()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var first, second map[string]any
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &first) != nil || json.Unmarshal([]byte(lines[1]), &second) != nil {
		t.Fatalf("log = %q", buf.String())
	}
	if first["trace_id"] != span.SpanContext().TraceID().String() || first["span_id"] != span.SpanContext().SpanID().String() ||
		first["service"] != "orders" || first["level"] != "ERROR" {
		t.Errorf("error line %v, want the span's trace and span ids", first)
	}
	if _, ok := second["trace_id"]; ok {
		t.Errorf("a line without a span has a trace id: %v", second)
	}
}
