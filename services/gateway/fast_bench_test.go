package gateway

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth/jwtauthtest"
)

// BenchmarkFastServe measures the fasthttp engine's own work per request, without sockets: the
// upstream listens in memory, so what remains is routing, the JWT check (cached), the
// rate-limit token, header rewriting, metrics and the in-memory round trip. Compare with
// BenchmarkFastBare, the same round trip with no gateway work, to see what the gateway adds:
// go test -run '^$' -bench 'Fast(Serve|Bare)' -benchmem ./services/gateway
func BenchmarkFastServe(b *testing.B) {
	e, _, iss := benchFastEngine(b)
	benchServe(b, e.serve, "/b/x", "Bearer "+iss.Token(b, "bench-user"))
}

// BenchmarkFastServeOnly is BenchmarkFastServe with an upstream that answers without any I/O:
// the gateway's work alone, free of the goroutine hand-offs that make the in-memory round trip
// noisy.
func BenchmarkFastServeOnly(b *testing.B) {
	e, client, iss := benchFastEngine(b)
	client.Transport = cannedAnswer{}
	benchServe(b, e.serve, "/b/x", "Bearer "+iss.Token(b, "bench-user"))
}

// BenchmarkFastBareOnly is BenchmarkFastServeOnly's baseline: the same request and canned
// answer with no gateway work.
func BenchmarkFastBareOnly(b *testing.B) {
	_, client, iss := benchFastEngine(b)
	client.Transport = cannedAnswer{}
	benchServe(b, func(ctx *fasthttp.RequestCtx) {
		if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
			b.Fatal(err)
		}
	}, "/b/x", "Bearer "+iss.Token(b, "bench-user"))
}

// cannedAnswer is an upstream round trip that answers 200 at once.
type cannedAnswer struct{}

func (cannedAnswer) RoundTrip(_ *fasthttp.HostClient, _ *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	resp.SetStatusCode(fasthttp.StatusOK)
	resp.Header.SetContentType("application/json")
	resp.SetBodyString(`{"ok":true}`)
	return false, nil
}

func BenchmarkFastBare(b *testing.B) {
	_, client, iss := benchFastEngine(b)
	benchServe(b, func(ctx *fasthttp.RequestCtx) {
		if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
			b.Fatal(err)
		}
	}, "/b/x", "Bearer "+iss.Token(b, "bench-user"))
}

func benchFastEngine(b *testing.B) (*fastEngine, *fasthttp.HostClient, *jwtauthtest.TokenIssuer) {
	ln := fasthttputil.NewInmemoryListener()
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		_ = fasthttp.Serve(ln, func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"ok":true}`)
		})
	}()
	iss := jwtauthtest.Start(b)
	file := filepath.Join(b.TempDir(), "routes.yaml")
	routes := "rate_limits:\n  high: {rate: 1000000000, burst: 1000000000}\nroutes:\n  - {name: b, prefix: /b, auth: required, rate_limit: high, upstreams: [{url: \"http://127.0.0.1:1\"}]}\n"
	if err := os.WriteFile(file, []byte(routes), 0o644); err != nil {
		b.Fatal(err)
	}
	env := map[string]string{"JWKS_URL": iss.JWKSURL, "ROUTES_FILE": file, "LOG_LEVEL": "warn", "GATEWAY_ENGINE": "fasthttp"}
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		b.Fatal(err)
	}
	// LOG_LEVEL=warn, as in make bench-gateway: no per-request line.
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, g, release, err := newServer(context.Background(), cfg, logger)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(release)
	e, err := newFastEngine(g, srv, cfg, logger)
	if err != nil {
		b.Fatal(err)
	}
	client := e.upstreams[&g.table.Routes[0].Upstreams[0]].client
	client.Dial = func(string) (net.Conn, error) { return ln.Dial() }
	return e, client, iss
}

func benchServe(b *testing.B, h fasthttp.RequestHandler, path, auth string) {
	remote := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 40000}
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var req fasthttp.Request
		req.SetRequestURI("http://gw.example" + path)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		ctx.Init(&req, remote, nil)
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// BenchmarkFastServer is BenchmarkFastServe through the engine's own fasthttp.Server: one
// keep-alive client connection in memory, so the request is parsed and the response written
// as on a socket (the server's settings included), without the kernel.
func BenchmarkFastServer(b *testing.B) {
	e, _, iss := benchFastEngine(b)
	benchServer(b, e.server(), "GET /b/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer "+iss.Token(b, "bench-user")+"\r\n\r\n")
}

// BenchmarkFastServerBare is BenchmarkFastServer's baseline: a default fasthttp.Server in front
// of the same upstream, with no gateway work.
func BenchmarkFastServerBare(b *testing.B) {
	_, client, iss := benchFastEngine(b)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
			b.Fatal(err)
		}
	}}
	benchServer(b, srv, "GET /b/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer "+iss.Token(b, "bench-user")+"\r\n\r\n")
}

func benchServer(b *testing.B, srv *fasthttp.Server, request string) {
	ln := fasthttputil.NewInmemoryListener()
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	conn, err := ln.Dial()
	if err != nil {
		b.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var resp fasthttp.Response
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := io.WriteString(conn, request); err != nil {
			b.Fatal(err)
		}
		resp.Reset()
		if err := resp.Read(br); err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			b.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
		}
	}
}
