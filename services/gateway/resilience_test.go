package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// readThenCloseUpstream reads each request in full and closes the connection without an
// answer: the request reached the upstream, so it must never be sent again.
func readThenCloseUpstream(t *testing.T) (string, *atomic.Int32) {
	var n atomic.Int32
	return tcpUpstream(t, func(c net.Conn) {
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		n.Add(1)
	}), &n
}

func TestNoRetryOnceTheRequestReachedTheUpstream(t *testing.T) {
	up, received := readThenCloseUpstream(t)
	f := startGateway(t, fmt.Sprintf(`
routes:
  - {name: gone, prefix: /gone, upstreams: [{url: %s}]}
`, up), nil)
	for _, tc := range []struct{ method, body string }{{"GET", ""}, {"DELETE", ""}, {"PUT", `{"a":1}`}, {"POST", `{"a":1}`}} {
		received.Store(0)
		var body any
		if tc.body != "" {
			body = tc.body
		}
		r := webtest.Do(t, tc.method, f.url+"/gone/1", body)
		if r.Status != http.StatusBadGateway {
			t.Errorf("%s to an upstream that hung up = %d, want 502", tc.method, r.Status)
		} else {
			r.Problem(t)
		}
		if n := received.Load(); n != 1 {
			t.Errorf("%s reached the upstream %d times, want once: it may have been processed", tc.method, n)
		}
	}
}

func TestNoRetryAfterATimeout(t *testing.T) {
	var received atomic.Int32
	slow, _, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	const timeout = 300 * time.Millisecond
	f := startGateway(t, fmt.Sprintf(`
routes:
  - {name: slow, prefix: /slow, upstreams: [{url: %s}]}
`, slow.URL), map[string]string{"UPSTREAM_TIMEOUT": timeout.String()})
	start := time.Now()
	r := webtest.Do(t, "GET", f.url+"/slow", nil)
	elapsed := time.Since(start)
	if r.Status != http.StatusGatewayTimeout {
		t.Fatalf("GET to a slow upstream = %d, want 504", r.Status)
	}
	if n := received.Load(); n != 1 {
		t.Errorf("a GET that timed out reached the upstream %d times, want once", n)
	}
	if elapsed < timeout || elapsed > 2*timeout {
		t.Errorf("504 after %v, want about UPSTREAM_TIMEOUT (%v), not a multiple of it", elapsed, timeout)
	}
}

// TestEarlyAnswersReachTheClient sends bodies larger than the upstream's limit: echo's
// BodyLimit answers 413 from Content-Length without reading the body, and the upstream then
// closes the connection. The client must get that 413 every time, not a 502.
func TestEarlyAnswersReachTheClient(t *testing.T) {
	cfg := web.Config{Addr: "127.0.0.1:0", RequestTimeout: 5 * time.Second, ShutdownTimeout: time.Second, BodyLimitBytes: 1 << 20}
	up := web.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	up.Echo.POST("/users", func(c echo.Context) error { return c.NoContent(http.StatusCreated) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- up.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	f := startGateway(t, fmt.Sprintf(`
routes:
  - {name: users, prefix: /users, upstreams: [{url: http://%s}]}
`, ln.Addr()), nil)
	big := bytes.Repeat([]byte("x"), 2<<20)
	statuses := map[int]int{}
	for i := 0; i < 30; i++ {
		req, _ := http.NewRequest("POST", f.url+"/users", bytes.NewReader(big))
		req.Header.Set("Content-Type", "application/json")
		if i%2 == 0 { // as curl sends bodies over 1 MiB
			req.Header.Set("Expect", "100-continue")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			statuses[-1]++
			t.Logf("try %d: %v", i, err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	if statuses[http.StatusRequestEntityTooLarge] != 30 {
		t.Errorf("30 oversized bodies through the gateway got %v (status: count), want 413 every time", statuses)
	}
	if r := webtest.Do(t, "POST", f.url+"/users", `{"a":1}`); r.Status != http.StatusCreated {
		t.Errorf("a small body after the oversized ones = %d, want 201", r.Status)
	}
}
