package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth/jwtauthtest"
	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// seen is what an upstream received.
type seen struct {
	Method, Path string
	Header       http.Header
	Upstream     string
}

// echoUpstream answers 200 with what it received, as JSON.
func echoUpstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Internal", "secret")
		_ = json.NewEncoder(w).Encode(seen{Method: r.Method, Path: r.URL.Path, Header: r.Header, Upstream: name})
	}))
	t.Cleanup(ts.Close)
	return ts
}

type gatewayFixture struct {
	url    string
	issuer *jwtauthtest.TokenIssuer
}

// startGateway runs the real gateway with the route file given (%s is replaced by upstream).
func startGateway(t testing.TB, routes string, env map[string]string) gatewayFixture {
	t.Helper()
	iss := jwtauthtest.Start(t)
	file := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(file, []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	all := map[string]string{"JWKS_URL": iss.JWKSURL, "ROUTES_FILE": file}
	for k, v := range env {
		all[k] = v
	}
	if engine := os.Getenv(testEngineVar); engine != "" {
		all["GATEWAY_ENGINE"] = engine
	}
	if all["GATEWAY_ENGINE"] == "loop" {
		return gatewayFixture{url: startLoop(t, all), issuer: iss}
	}
	return gatewayFixture{url: startNetHTTP(t, all), issuer: iss}
}

// testEngineVar makes startGateway run another engine (TestLoopEngine sets it).
const testEngineVar = "GATEWAY_TEST_ENGINE"

// testLogs holds, by test, where the gateways a test starts write their logs (captureLogs);
// without one they write nowhere.
var testLogs sync.Map

// captureLogs makes the gateways t starts write their JSON log lines to the returned buffer.
func captureLogs(t testing.TB) *lockedLog {
	l := &lockedLog{}
	testLogs.Store(t, l)
	t.Cleanup(func() { testLogs.Delete(t) })
	return l
}

// lockedLog is a log buffer written by the gateway's goroutines and read by the test.
type lockedLog struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// testServer is what Run builds before it serves an engine, from env.
type testServer struct {
	cfg     Config
	logger  *slog.Logger
	srv     *web.Server
	g       *Gateway
	release func()
}

func newTestServer(t testing.TB, env map[string]string) testServer {
	t.Helper()
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var logs io.Writer = io.Discard
	if w, ok := testLogs.Load(t); ok {
		logs = w.(io.Writer)
	}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	srv, g, release, err := newServer(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return testServer{cfg: cfg, logger: logger, srv: srv, g: g, release: release}
}

// startNetHTTP runs the net/http engine as Run does (web.Server.Serve: its connections read
// through the framing guard) on loopback until the test ends.
func startNetHTTP(t testing.TB, env map[string]string) string {
	t.Helper()
	if _, ok := env["SHUTDOWN_TIMEOUT"]; !ok {
		env["SHUTDOWN_TIMEOUT"] = "1s" // a test's tunnels and slow clients need not be waited for
	}
	ts := newTestServer(t, env)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ts.release()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; ts.release() })
	return "http://" + ln.Addr().String()
}

func decodeSeen(t *testing.T, r webtest.Response) seen {
	t.Helper()
	var s seen
	r.Decode(t, &s)
	return s
}

func TestAuthenticationAndIdentityHeaders(t *testing.T) {
	up := echoUpstream(t, "api")
	f := startGateway(t, fmt.Sprintf(`
routes:
  - {name: private, prefix: /private, auth: required, upstreams: [{url: %[1]s}]}
  - {name: maybe, prefix: /maybe, auth: optional, upstreams: [{url: %[1]s}]}
  - {name: public, prefix: /public, upstreams: [{url: %[1]s}]}
`, up.URL), nil)
	valid := f.issuer.Token(t, "user-42", "admin")
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "iss": jwtauthtest.Issuer, "aud": jwtauthtest.Audience,
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	other := jwtauthtest.Start(t).Token(t, "intruder")
	forged := []string{HeaderUserID, "someone-else", HeaderUserRoles, "admin"}

	tests := []struct {
		name       string
		path       string
		header     []string
		wantStatus int
		wantUser   string
	}{
		{"required with token", "/private/x", append(webtest.Bearer(valid), forged...), 200, "user-42"},
		{"required without token", "/private/x", forged, 401, ""},
		{"alg none", "/private/x", webtest.Bearer(noneTok), 401, ""},
		{"unknown signer", "/private/x", webtest.Bearer(other), 401, ""},
		{"optional without token", "/maybe", forged, 200, ""},
		{"optional with bad token", "/maybe", webtest.Bearer("bad"), 401, ""},
		{"public strips forged identity", "/public", forged, 200, ""},
		{"no route", "/reservations", webtest.Bearer(valid), 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := webtest.Do(t, "GET", f.url+tt.path, nil, tt.header...)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if r.Status != 200 {
				r.Problem(t)
				if r.Status == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Error("401 without a Bearer challenge")
				}
				return
			}
			s := decodeSeen(t, r)
			if got := s.Header.Get(HeaderUserID); got != tt.wantUser {
				t.Errorf("upstream saw %s %q, want %q", HeaderUserID, got, tt.wantUser)
			}
			if tt.wantUser == "" && s.Header.Get(HeaderUserRoles) != "" {
				t.Errorf("forged roles reached the upstream: %q", s.Header.Get(HeaderUserRoles))
			}
		})
	}
}

func TestRewriteHeadersAndTracing(t *testing.T) {
	up := echoUpstream(t, "api")
	f := startGateway(t, fmt.Sprintf(`
routes:
  - name: v2
    prefix: /api/v2/items
    rewrite_prefix: /items
    upstreams: [{url: %s}]
    request_headers: {add: {X-Api-Version: "2"}, remove: [X-Debug]}
    response_headers: {add: {Cache-Control: no-store}, remove: [X-Internal]}
`, up.URL), nil)
	trace := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := webtest.Do(t, "GET", f.url+"/api/v2/items/7", nil, "X-Debug", "1", "Traceparent", trace, "X-Request-Id", "req-1")
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	s := decodeSeen(t, r)
	if s.Path != "/items/7" || s.Header.Get("X-Api-Version") != "2" || s.Header.Get("X-Debug") != "" {
		t.Errorf("upstream saw path %s, headers %v", s.Path, s.Header)
	}
	if s.Header.Get("X-Request-Id") != "req-1" || !strings.HasPrefix(s.Header.Get("Traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
		t.Errorf("request id %q, traceparent %q not propagated", s.Header.Get("X-Request-Id"), s.Header.Get("Traceparent"))
	}
	if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("X-Internal") != "" {
		t.Errorf("response headers = %v", r.Header)
	}
	// Without an incoming id the gateway makes one; upstream and client see that one only.
	r = webtest.Do(t, "GET", f.url+"/api/v2/items/8", nil)
	ids := r.Header.Values("X-Request-Id")
	if len(ids) != 1 || ids[0] == "" || decodeSeen(t, r).Header.Get("X-Request-Id") != ids[0] {
		t.Errorf("response ids %q, upstream saw %q; want one id, the same", ids, decodeSeen(t, r).Header.Get("X-Request-Id"))
	}
}

func TestRateLimitAnswers429WithHeaders(t *testing.T) {
	up := echoUpstream(t, "api")
	f := startGateway(t, fmt.Sprintf(`
rate_limits:
  tight: {rate: 1, burst: 2}
routes:
  - {name: limited, prefix: /limited, rate_limit: tight, upstreams: [{url: %s}]}
`, up.URL), nil)
	var statuses []int
	var last webtest.Response
	for i := 0; i < 3; i++ {
		last = webtest.Do(t, "POST", f.url+"/limited", `{}`)
		statuses = append(statuses, last.Status)
	}
	if fmt.Sprint(statuses) != "[200 200 429]" {
		t.Fatalf("statuses = %v, want [200 200 429]", statuses)
	}
	p := last.Problem(t)
	if last.Header.Get("Retry-After") != "1" || !strings.Contains(p.Detail, "tight") {
		t.Errorf("429: Retry-After %q, detail %q", last.Header.Get("Retry-After"), p.Detail)
	}
	if last.Header.Get("RateLimit-Policy") != `"tight";q=1;w=1;burst=2` || !strings.HasPrefix(last.Header.Get("RateLimit"), `"tight";r=0;t=`) {
		t.Errorf("RateLimit-Policy %q, RateLimit %q", last.Header.Get("RateLimit-Policy"), last.Header.Get("RateLimit"))
	}
	// Another client (by API key) has its own bucket.
	f2 := startGateway(t, fmt.Sprintf("rate_limits:\n  tight: {rate: 1, burst: 1}\nroutes:\n  - {name: l, prefix: /l, rate_limit: tight, upstreams: [{url: %s}]}\n", up.URL),
		map[string]string{"API_KEY_HEADER": "X-Api-Key"})
	a1 := webtest.Do(t, "GET", f2.url+"/l", nil, "X-Api-Key", "a")
	a2 := webtest.Do(t, "GET", f2.url+"/l", nil, "X-Api-Key", "a")
	b1 := webtest.Do(t, "GET", f2.url+"/l", nil, "X-Api-Key", "b")
	if a1.Status != 200 || a2.Status != 429 || b1.Status != 200 {
		t.Errorf("a, a, b = %d %d %d; want 200 429 200", a1.Status, a2.Status, b1.Status)
	}
	// Clients cannot pick their own key with X-Forwarded-For from an untrusted address.
	x1 := webtest.Do(t, "GET", f.url+"/limited", nil, "X-Forwarded-For", "198.51.100.7")
	if x1.Status != 429 {
		t.Errorf("X-Forwarded-For from an untrusted peer got a fresh bucket: %d", x1.Status)
	}
}

func TestLoginAndSignupAreLimitedPerAddress(t *testing.T) {
	users := echoUpstream(t, "users")
	iss := jwtauthtest.Start(t)
	// The built-in routes, as make run and the cluster's defaults use them.
	g := webtest.Start(t, map[string]string{"JWKS_URL": iss.JWKSURL, "USERS_URL": users.URL, "API_KEY_HEADER": "X-Api-Key",
		"LOGIN_RATE": "0.001", "LOGIN_BURST": "3", "SIGNUP_RATE": "0.001", "SIGNUP_BURST": "2"}, LoadConfig, NewServer)
	for _, tc := range []struct {
		path  string
		burst int
	}{{"/users/login", 3}, {"/users", 2}} {
		var statuses []int
		for i := 0; i <= tc.burst; i++ {
			// A fresh API key and token on every try: neither gives a caller a fresh bucket here.
			r := webtest.Do(t, "POST", g.URL+tc.path, `{}`, "X-Api-Key", fmt.Sprint("key-", i),
				"Authorization", "Bearer "+iss.Token(t, fmt.Sprint("user-", i)))
			statuses = append(statuses, r.Status)
		}
		want := strings.Repeat("200 ", tc.burst) + "429"
		if got := strings.Trim(fmt.Sprint(statuses), "[]"); got != want {
			t.Errorf("POST %s from one address: %s, want %s", tc.path, got, want)
		}
	}
	// Other routes keep counting by client.
	if r := webtest.Do(t, "GET", g.URL+"/users/me", nil, "X-Api-Key", "other"); r.Status != 200 {
		t.Errorf("GET /users/me = %d, want 200", r.Status)
	}

	_, err := LoadConfig(func(k string) string {
		return map[string]string{"ROUTES_FILE": "routes.yaml", "LOGIN_RATE": "5", "SIGNUP_BURST": "0"}[k]
	})
	if err == nil || !strings.Contains(err.Error(), "LOGIN_RATE applies to the built-in routes only") {
		t.Errorf("LOGIN_RATE with ROUTES_FILE: %v; want an error that says the file's rate_limits apply", err)
	}
	if _, err := ParseTable([]byte("rate_limits:\n  l: {rate: 1, burst: 1, by: token}\nroutes:\n  - {name: a, prefix: /a, upstreams: [{url: http://x}]}\n")); err == nil ||
		!strings.Contains(err.Error(), "by must be client or address") {
		t.Errorf("by: token accepted: %v", err)
	}
}

// flakyUpstream accepts connections and closes them at once, counting attempts.
func flakyUpstream(t *testing.T) (string, *atomic.Int32) {
	var n atomic.Int32
	return tcpUpstream(t, func(c net.Conn) { n.Add(1); c.Close() }), &n
}

// tcpUpstream serves each accepted connection with handle, in its own goroutine, until the
// test ends; it returns the upstream's URL.
func tcpUpstream(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return "http://" + ln.Addr().String()
}

func TestUpstreamFailures(t *testing.T) {
	flaky, attempts := flakyUpstream(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	f := startGateway(t, fmt.Sprintf(`
routes:
  - {name: flaky, prefix: /flaky, upstreams: [{url: %s}]}
  - {name: slow, prefix: /slow, upstreams: [{url: %s}]}
`, flaky, slow.URL), map[string]string{"UPSTREAM_TIMEOUT": "200ms"})

	attempts.Store(0)
	if r := webtest.Do(t, "POST", f.url+"/flaky", `{"a":1}`); r.Status != 502 {
		t.Errorf("POST to a failing upstream = %d, want 502", r.Status)
	} else {
		r.Problem(t)
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("POST was tried %d times, want 1 (never retried)", n)
	}
	attempts.Store(0)
	if r := webtest.Do(t, "GET", f.url+"/flaky", nil); r.Status != 502 {
		t.Errorf("GET to a failing upstream = %d, want 502", r.Status)
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("GET was tried %d times, want 1: the connection was accepted, so the request may have arrived", n)
	}
	r := webtest.Do(t, "GET", f.url+"/slow", nil)
	if r.Status != 504 {
		t.Errorf("slow upstream = %d, want 504", r.Status)
	} else if !strings.Contains(r.Problem(t).Detail, "did not answer in time") {
		t.Errorf("504 detail = %s", r.Body)
	}
}

func TestCanaryRoutesToBothUpstreams(t *testing.T) {
	stable, canary := echoUpstream(t, "stable"), echoUpstream(t, "canary")
	f := startGateway(t, fmt.Sprintf("routes:\n  - {name: c, prefix: /c, upstreams: [{url: %s, weight: 50}, {url: %s, weight: 50}]}\n", stable.URL, canary.URL), nil)
	got := map[string]int{}
	for i := 0; i < 200; i++ {
		got[decodeSeen(t, webtest.Do(t, "GET", f.url+"/c", nil)).Upstream]++
	}
	// Binomial(200, 0.5): 5 standard deviations is ~35.
	if got["stable"] < 65 || got["canary"] < 65 {
		t.Errorf("split = %v, want about 100 each", got)
	}
}

func TestInvalidRouteFileStopsStartUp(t *testing.T) {
	file := filepath.Join(t.TempDir(), "routes.yaml")
	_ = os.WriteFile(file, []byte("routes:\n  - name: a\n    prefix: nope\n    upstreams: [{url: http://x}]\n"), 0o644)
	cfg, err := LoadConfig(func(k string) string { return map[string]string{"ROUTES_FILE": file}[k] })
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = NewServer(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("NewServer = %v, want an error naming the file and line", err)
	}
}

func TestPprofListenerIsSeparateAndOptIn(t *testing.T) {
	up := echoUpstream(t, "api")
	routes := fmt.Sprintf("routes:\n  - {name: a, prefix: /a, upstreams: [{url: %s}]}\n", up.URL)
	addr := webtest.FreeAddr(t)
	f := startGateway(t, routes, map[string]string{"PPROF_ADDR": addr})
	if r := webtest.Do(t, "GET", "http://"+addr+"/debug/pprof/", nil); r.Status != 200 {
		t.Errorf("pprof index = %d", r.Status)
	}
	if r := webtest.Do(t, "GET", f.url+"/debug/pprof/", nil); r.Status != 404 {
		t.Errorf("pprof on the public port = %d, want 404", r.Status)
	}
}

func TestMTLSConfigNeedsHTTPSUpstreams(t *testing.T) {
	_, err := LoadConfig(func(k string) string {
		return map[string]string{"TLS_MODE": "mtls", "TLS_CERT_FILE": "c", "TLS_KEY_FILE": "k", "TLS_CA_FILE": "ca",
			"ORDERS_URL": "https://orders", "USERS_URL": "http://users"}[k]
	})
	if err == nil {
		t.Fatal("TLS_MODE=mtls accepted plain upstream URLs")
	}
	for _, name := range []string{"USERS_URL", "PRODUCTS_URL", "JWKS_URL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), "ORDERS_URL") {
		t.Errorf("error %q names ORDERS_URL, which is https", err)
	}
}

// TestGatewayMetrics: requests are counted by route name (not echo's catch-all), rate-limit
// decisions by route and decision, and each upstream address's health.
func TestGatewayMetrics(t *testing.T) {
	up := echoUpstream(t, "api")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there: every dial is refused
	f := startGateway(t, fmt.Sprintf(`
rate_limits:
  tight: {rate: 0.001, burst: 1}
routes:
  - {name: api, prefix: /api, rate_limit: tight, upstreams: [{url: %s}]}
  - {name: gone, prefix: /gone, upstreams: [{url: http://%s}]}
`, up.URL, dead), nil)
	webtest.Do(t, "GET", f.url+"/api/1", nil)
	webtest.Do(t, "GET", f.url+"/api/2", nil)
	webtest.Do(t, "GET", f.url+"/gone", nil)
	webtest.Do(t, "GET", f.url+"/nowhere", nil)
	m := string(webtest.Do(t, "GET", f.url+"/metrics", nil).Body)
	upstream := strings.TrimPrefix(up.URL, "http://")
	for _, want := range []string{
		`http_requests_total{method="GET",route="api",status="200"} 1`,
		`http_requests_total{method="GET",route="api",status="429"} 1`,
		`http_requests_total{method="GET",route="gone",status="502"} 1`,
		`http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`gateway_rate_limit_decisions_total{decision="allowed",route="api"} 1`,
		`gateway_rate_limit_decisions_total{decision="limited",route="api"} 1`,
		`gateway_upstream_up{upstream="` + upstream + `"} 1`,
		`gateway_upstream_up{upstream="` + dead + `"} 0`,
		`gateway_upstream_retries_total{outcome="retried",upstream="` + dead + `"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
