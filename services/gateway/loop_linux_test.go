//go:build linux

package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth/jwtauthtest"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// startLoop runs the event-loop engine, as Run does, on loopback until the test ends.
func startLoop(t testing.TB, env map[string]string) string {
	t.Helper()
	return startLoopWith(t, env, net.DefaultResolver.LookupNetIP)
}

// startLoopWith is startLoop with the resolver for upstreams named by host name.
func startLoopWith(t testing.TB, env map[string]string, lookup lookupFunc) string {
	t.Helper()
	e, ctx, cancel := newTestLoopEngineWith(t, env, lookup)
	return "http://" + serveTestLoopEngine(t, e, ctx, cancel)
}

// newTestLoopEngine makes the engine on a test server, not listening yet; ctx is the engine's,
// and the server and ctx end with the test.
func newTestLoopEngine(t *testing.T, env map[string]string) (*loopEngine, context.Context, context.CancelFunc) {
	t.Helper()
	return newTestLoopEngineWith(t, env, net.DefaultResolver.LookupNetIP)
}

// newTestLoopEngineWith is newTestLoopEngine with the resolver for upstreams named by host name.
func newTestLoopEngineWith(t testing.TB, env map[string]string, lookup lookupFunc) (*loopEngine, context.Context, context.CancelFunc) {
	t.Helper()
	ts := newTestServer(t, env)
	t.Cleanup(ts.release)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e, err := newLoopEngineWith(ctx, ts.g, ts.srv, ts.cfg, ts.logger, lookup)
	if err != nil {
		t.Fatal(err)
	}
	return e, ctx, cancel
}

// serveTestLoopEngine listens on loopback and serves e (from newTestLoopEngine) until the test
// ends, then waits for it to stop; it returns the address.
func serveTestLoopEngine(t testing.TB, e *loopEngine, ctx context.Context, cancel context.CancelFunc) string {
	t.Helper()
	if err := e.listen("127.0.0.1:0", 2); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.serve(ctx, 0, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("loop engine: %v", err)
		}
	})
	return e.addr.String()
}

// routesEnv is the environment of a gateway serving routes (a routes file's text), with a
// token issuer for its JWKS_URL.
func routesEnv(t *testing.T, routes string) (map[string]string, *jwtauthtest.TokenIssuer) {
	t.Helper()
	iss := jwtauthtest.Start(t)
	file := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(file, []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"JWKS_URL": iss.JWKSURL, "ROUTES_FILE": file}, iss
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
	env, _ := routesEnv(t, "routes:\n  - {name: up, prefix: /, upstreams: [{url: "+up.URL+"}]}\n")
	e, ctx, cancel := newTestLoopEngine(t, env)
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

// TestLoopEngineLooksUpOnDemand: an upstream named by host name whose lookup failed at start
// is looked up again by the first request that needs it, rather than failing until the next
// refresh; while the lookup fails, requests get a 502 problem.
func TestLoopEngineLooksUpOnDemand(t *testing.T) {
	up, _, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "found") })
	_, port, _ := net.SplitHostPort(up.Listener.Addr().String())
	var dnsUp atomic.Bool
	var lookups atomic.Int32
	lookup := func(_ context.Context, _, host string) ([]netip.Addr, error) {
		lookups.Add(1)
		if host != "upstream.test" || !dnsUp.Load() {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	env, _ := routesEnv(t, "routes:\n  - {name: named, prefix: /, upstreams: [{url: \"http://upstream.test:"+port+"\"}]}\n")
	url := startLoopWith(t, env, lookup) + "/x"
	if n := lookups.Load(); n != 1 {
		t.Fatalf("%d lookups at start, want 1", n)
	}

	r := webtest.Do(t, "GET", url, nil)
	if r.Status != 502 || r.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.Body), "route named is unavailable") {
		t.Errorf("while the name does not resolve: %d %s %s, want a 502 problem", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	if n := lookups.Load(); n != 2 {
		t.Errorf("%d lookups after a request found no address, want 2 (the request looked it up again)", n)
	}

	dnsUp.Store(true) // well before the 10 s refresh
	r = webtest.Do(t, "GET", url, nil)
	if r.Status != 200 || string(r.Body) != "found" {
		t.Errorf("once the name resolves: %d %q, want 200 from the upstream", r.Status, r.Body)
	}
	r = webtest.Do(t, "GET", url, nil)
	if n := lookups.Load(); r.Status != 200 || n != 3 {
		t.Errorf("the next request: %d after %d lookups, want 200 with no further lookup (3 in all)", r.Status, n)
	}
}

// TestLoopEngineRefusesATakenPort: the loops' SO_REUSEPORT listeners must not quietly share a
// port with another process already serving it; the start fails and says why.
func TestLoopEngineRefusesATakenPort(t *testing.T) {
	first := startLoop(t, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(first, "http://"))
	e, _, _ := newTestLoopEngine(t, nil)
	err := e.listen("127.0.0.1:"+port, 2)
	if err == nil {
		e.closeLoops()
		t.Fatalf("a second engine started on port %s, taken by the first", port)
	}
	if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "another process is listening on port "+port) {
		t.Errorf("error %q, want EADDRINUSE saying another process listens on the port", err)
	}
	if r := webtest.Do(t, "GET", first+"/healthz", nil); r.Status != 200 {
		t.Errorf("the first engine after the second's attempt: /healthz %d, want 200", r.Status)
	}
}

// TestLoopEngineNeedsNoTickToSeeEvents: a loop parks without a last look when its round took
// every ready event (loop.run), trusting the kernel to tell the runtime's poller of any event
// that came meanwhile. With the timer tick an hour long, an event it failed to tell would stall
// its request until the 5-second deadline below: keep-alive requests, new connections,
// pipelined requests (their turn is posted through the eventfd), a token verified off the loop,
// and an upload long enough that its connection yields to the others.
func TestLoopEngineNeedsNoTickToSeeEvents(t *testing.T) {
	up, _, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, r.URL.Path+" "+strconv.FormatInt(n, 10))
	})
	env, iss := routesEnv(t, "routes:\n  - {name: open, prefix: /open, body_limit_bytes: 8388608, upstreams: [{url: "+up.URL+"}]}\n"+
		"  - {name: auth, prefix: /auth, auth: required, upstreams: [{url: "+up.URL+"}]}\n")
	e, ctx, cancel := newTestLoopEngine(t, env)
	e.tick, e.idleTick = time.Hour, time.Hour
	addr := serveTestLoopEngine(t, e, ctx, cancel)
	dial := func() (net.Conn, *bufio.Reader) {
		c, br := dialRaw(t, addr)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second)) // a stalled request fails here, not after an hour
		return c, br
	}
	want := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: %q, want %q", what, got, want)
		}
	}

	kept, keptBR := dial()
	for i := range 30 {
		send(t, kept, "GET /open/k HTTP/1.1\r\nHost: x\r\n\r\n")
		want("keep-alive request "+strconv.Itoa(i), readBody(t, keptBR, "GET"), "/open/k 0")
	}
	for i := range 10 {
		c, br := dial()
		send(t, c, "GET /open/n HTTP/1.1\r\nHost: x\r\n\r\n")
		want("request on new connection "+strconv.Itoa(i), readBody(t, br, "GET"), "/open/n 0")
		c.Close()
	}
	send(t, kept, "GET /open/p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /open/p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /open/p3 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, p := range []string{"/open/p1 0", "/open/p2 0", "/open/p3 0"} {
		want("pipelined request", readBody(t, keptBR, "GET"), p)
	}
	send(t, kept, "GET /auth/t HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+iss.Token(t, "user-1", "customer")+"\r\n\r\n")
	want("request with a token not yet cached", readBody(t, keptBR, "GET"), "/auth/t 0")
	body := strings.Repeat("x", 4<<20)
	go func() {
		_, _ = io.WriteString(kept, "POST /open/u HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n"+body)
	}()
	want("upload", readBody(t, keptBR, "POST"), "/open/u 4194304")
	kept.Close()
}

// TestLoopEngineIdlesQuietly: with no request in flight a loop runs its timers on the idle
// tick, not every loopTick; the first request brings the short tick back (TestLoopEngine's
// NoRetryAfterATimeout checks that its UPSTREAM_TIMEOUT still holds).
func TestLoopEngineIdlesQuietly(t *testing.T) {
	up, _, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	env, _ := routesEnv(t, "routes:\n  - {name: up, prefix: /, upstreams: [{url: "+up.URL+"}]}\n")
	e, ctx, cancel := newTestLoopEngine(t, env)
	addr := serveTestLoopEngine(t, e, ctx, cancel)
	if r := webtest.Do(t, "GET", "http://"+addr+"/x", nil); r.Status != 200 {
		t.Fatalf("GET = %d, want 200", r.Status)
	}
	// The counts are read in the loops, which own them. A read wakes a loop, which may then run
	// its timers once.
	state := func() (ticks int, idle bool) {
		idle = true
		for _, l := range e.loops {
			type seen struct {
				ticks int
				slow  bool
			}
			got := make(chan seen)
			l.post(func() { got <- seen{l.ticks, l.slow} })
			v := <-got
			ticks, idle = ticks+v.ticks, idle && v.slow
		}
		return ticks, idle
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) { // the request's last short ticks
		if _, idle := state(); idle {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the loops did not go over to the idle tick within 5 s of the request")
		}
	}
	before, _ := state()
	time.Sleep(500 * time.Millisecond)
	after, _ := state()
	// Two loops on the idle tick (1 s) run their timers at most twice in 500 ms between them;
	// on loopTick (25 ms) it would be about 40 times.
	if n := after - before; n > 2 {
		t.Errorf("the idle loops ran their timers %d times in 500 ms, want at most 2", n)
	}
}
