//go:build linux

package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth/jwtauthtest"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// startLoop runs the event-loop engine, as Run does, on loopback until the test ends.
func startLoop(t *testing.T, env map[string]string) string {
	t.Helper()
	ts := newTestServer(t, env)
	release := ts.release
	ctx, cancel := context.WithCancel(context.Background())
	e, err := newLoopEngine(ctx, ts.g, ts.srv, ts.cfg, ts.logger)
	if err == nil {
		err = e.listen("127.0.0.1:0", 2)
	}
	if err != nil {
		cancel()
		release()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.serve(ctx, 0, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("loop engine: %v", err)
		}
		release()
	})
	return "http://" + e.addr.String()
}

// TestLoopEngineDrains: on shutdown the engine answers /readyz 503 and closes keep-alive
// connections after their next answer while SHUTDOWN_DRAIN runs, lets a request in flight
// finish, then stops listening.
func TestLoopEngineDrains(t *testing.T) {
	release := make(chan struct{})
	up, _, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	iss := jwtauthtest.Start(t)
	file := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(file, []byte("routes:\n  - {name: up, prefix: /, upstreams: [{url: "+up.URL+"}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, map[string]string{"JWKS_URL": iss.JWKSURL, "ROUTES_FILE": file})
	defer ts.release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := newLoopEngine(ctx, ts.g, ts.srv, ts.cfg, ts.logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.listen("127.0.0.1:0", 2); err != nil {
		t.Fatal(err)
	}
	addr := e.addr.String()
	done := make(chan error, 1)
	go func() { done <- e.serve(ctx, 300*time.Millisecond, 5*time.Second) }()

	kept, keptBR := dialRaw(t, addr)
	send(t, kept, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	readBody(t, keptBR, "GET")
	slow, slowBR := dialRaw(t, addr)
	send(t, slow, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // the slow request is upstream

	cancel()
	time.Sleep(50 * time.Millisecond) // draining now
	if r := webtest.Do(t, "GET", "http://"+addr+"/readyz", nil); r.Status != 503 {
		t.Errorf("/readyz while draining = %d, want 503", r.Status)
	}
	send(t, kept, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(keptBR, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("a keep-alive request while draining: %d, Connection: close %v; want 200 and close", resp.StatusCode, resp.Close)
	}
	if _, err := keptBR.ReadByte(); err != io.EOF {
		t.Errorf("the kept connection after its answer while draining: %v, want EOF", err)
	}

	time.Sleep(400 * time.Millisecond) // past the drain: the listeners are closed
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("a new connection was accepted after the drain")
	}
	close(release)
	if got := readBody(t, slowBR, "GET"); got != "done" {
		t.Errorf("the request in flight at shutdown got %q, want its answer", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the engine did not stop after its last connection closed")
	}
}
