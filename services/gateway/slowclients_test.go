package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// Slow and oversized clients, on raw connections to both engines, judged by what the client
// gets and what reaches a recording upstream.

// slowGateway runs engine in front of a recorder with a 1 s head deadline and 1 KiB/s
// bodies after a 1 s grace; /small accepts bodies of 10 bytes.
func slowGateway(t *testing.T, engine string, env map[string]string) (string, *recorder) {
	t.Helper()
	rec := newRecorder(t)
	all := map[string]string{"GATEWAY_ENGINE": engine, "REQUEST_HEADER_TIMEOUT": "1s", "REQUEST_BODY_MIN_RATE": "1024"}
	for k, v := range env {
		all[k] = v
	}
	f := startGateway(t, fmt.Sprintf(`
routes:
  - {name: small, prefix: /small, body_limit_bytes: 10, upstreams: [{url: %[1]s}]}
  - {name: pub, prefix: /pub, upstreams: [{url: %[1]s}]}
`, rec.url), all)
	return strings.TrimPrefix(f.url, "http://"), rec
}

// trickle writes s a byte at a time, every gap, until the gateway answers or s is sent; then
// it reads the answer. It returns the answer's status, its body, when it came, and whether the
// connection was closed after it.
func trickle(t *testing.T, addr, head, s string, gap time.Duration) (status int, body string, after time.Duration, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{})
	go func() {
		for i := 0; i < len(s); i++ {
			select {
			case <-answered:
				return
			case <-time.After(gap):
			}
			if _, err := c.Write([]byte{s[i]}); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	close(answered)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	after = time.Since(start)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond)) // a close comes at once, if at all
	_, err = br.ReadByte()
	return resp.StatusCode, string(b), after, err == io.EOF
}

// timeouts is gateway_client_timeouts_total{phase} as the gateway reports it.
func timeouts(t *testing.T, addr, phase string) string {
	body := string(webtest.Do(t, "GET", "http://"+addr+"/metrics", nil).Body)
	return grepLines(body, `gateway_client_timeouts_total{phase="`+phase+`"}`)
}

// TestSlowHeadsAndBodies: a head that comes a byte at a time is answered 408 at
// REQUEST_HEADER_TIMEOUT and closed; so is a body under REQUEST_BODY_MIN_RATE once the grace
// is over, and the upstream never hears of either: the gateway takes no upstream connection
// before the first 16 KiB of a body (all of a smaller one) are in.
func TestSlowHeadsAndBodies(t *testing.T) {
	for _, engine := range suiteEngines {
		t.Run(engine, func(t *testing.T) {
			addr, rec := slowGateway(t, engine, nil)
			status, body, after, closed := trickle(t, addr, "", "GET /pub/a HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789\r\n\r\n", 100*time.Millisecond)
			if status != http.StatusRequestTimeout || !closed || !strings.Contains(body, "REQUEST_HEADER_TIMEOUT") {
				t.Errorf("a head a byte per 100 ms: %d %q, closed %v; want 408 and closed", status, body, closed)
			}
			if after < time.Second || after > 2500*time.Millisecond {
				t.Errorf("a head a byte per 100 ms was answered after %v; want at the 1 s deadline", after)
			}
			if got := timeouts(t, addr, "head"); !strings.HasSuffix(got, " 1") {
				t.Errorf("head timeouts counted: %q, want 1", got)
			}

			status, body, after, closed = trickle(t, addr, "POST /pub/b HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789", strings.Repeat("x", 100), 100*time.Millisecond)
			if status != http.StatusRequestTimeout || !closed || !strings.Contains(body, "REQUEST_BODY_MIN_RATE") {
				t.Errorf("a body a byte per 100 ms: %d %q, closed %v; want 408 and closed", status, body, closed)
			}
			if after < time.Second || after > 2500*time.Millisecond {
				t.Errorf("a body a byte per 100 ms was answered after %v; want just after the 1 s grace", after)
			}
			if got := timeouts(t, addr, "body"); !strings.HasSuffix(got, " 1") {
				t.Errorf("body timeouts counted: %q, want 1", got)
			}

			// A head that comes whole within the deadline, and a body that keeps the rate, pass.
			status, _, _, _ = trickle(t, addr, "POST /pub/c HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n", "\r\n01234567890123456789", 20*time.Millisecond)
			if status != http.StatusOK {
				t.Errorf("a request sent within its deadlines: %d, want 200", status)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.seen) != 1 || rec.seen[0].request != "POST /pub/c" || len(rec.conns) != 1 {
				t.Errorf("the upstream saw %+v on %d connections; want only POST /pub/c, on one", rec.seen, len(rec.conns))
			}
		})
	}
}

// TestBodyLimit: BODY_LIMIT_BYTES, or a route's body_limit_bytes, on proxied bodies: a
// declared length over it is answered 413 before anything reaches the upstream (the body is
// read and dropped, so that the client is not reset); a chunked body that crosses it is cut
// off, the upstream getting an aborted request, and the client 413.
func TestBodyLimit(t *testing.T) {
	const limit = 1 << 20
	for _, engine := range suiteEngines {
		t.Run(engine, func(t *testing.T) {
			addr, rec := slowGateway(t, engine, nil)
			do := func(req string) (int, string) {
				c, br := dialRaw(t, addr)
				send(t, c, req)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%.60q: %v", req, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			over := strings.Repeat("x", limit+1)
			if status, body := do(withLength("/pub/declared", "", over)); status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "1048576 bytes") {
				t.Errorf("a declared 1 MiB + 1: %d %q, want 413 naming the limit", status, body)
			}
			if status, _ := do(withLength("/pub/exact", "", over[:limit])); status != http.StatusOK {
				t.Errorf("a declared 1 MiB: %d, want 200", status)
			}
			chunks := ""
			for left := limit + 1; left > 0; left -= 64 << 10 {
				n := min(left, 64<<10)
				chunks += fmt.Sprintf("%x\r\n%s\r\n", n, over[:n])
			}
			if status, _ := do(withChunks("/pub/chunked", "Transfer-Encoding: chunked\r\n", chunks+"0\r\n\r\n")); status != http.StatusRequestEntityTooLarge {
				t.Errorf("a chunked 1 MiB + 1: %d, want 413", status)
			}
			if status, _ := do(withLength("/small/a", "", "01234567890")); status != http.StatusRequestEntityTooLarge {
				t.Errorf("11 bytes where the route takes 10: %d, want 413", status)
			}
			if status, _ := do(withLength("/small/b", "", "0123456789")); status != http.StatusOK {
				t.Errorf("10 bytes where the route takes 10: %d, want 200", status)
			}
			time.Sleep(100 * time.Millisecond)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			var got []string
			for _, s := range rec.seen {
				got = append(got, fmt.Sprintf("%s complete=%v", s.request, s.complete))
			}
			slices.Sort(got) // an aborted request is recorded when its upstream connection closes
			want := []string{"POST /pub/chunked complete=false", "POST /pub/exact complete=true", "POST /small/b complete=true"}
			if !slices.Equal(got, want) {
				t.Errorf("the upstream saw %q, want %q", got, want)
			}
		})
	}
}

// TestSlowClientsDoNotStopOthers: 300 clients trickling heads and bodies hold no upstream
// connection and do not keep other clients' requests from being answered.
func TestSlowClientsDoNotStopOthers(t *testing.T) {
	for _, engine := range suiteEngines {
		t.Run(engine, func(t *testing.T) {
			addr, rec := slowGateway(t, engine, map[string]string{"REQUEST_HEADER_TIMEOUT": "5s"})
			var wg sync.WaitGroup
			stop := make(chan struct{})
			var open atomic.Int32
			for i := 0; i < 300; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("tcp", addr)
					if err != nil {
						return
					}
					defer c.Close()
					open.Add(1)
					first := "GET /pub/slow HTTP/1.1\r\nHost: x\r\n" // a head that never ends
					if i%2 == 1 {
						first = "POST /pub/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" // a body that hardly comes
					}
					_, _ = io.WriteString(c, first)
					for {
						select {
						case <-stop:
							return
						case <-time.After(500 * time.Millisecond):
						}
						if _, err := c.Write([]byte("x")); err != nil {
							return
						}
					}
				}()
			}
			time.Sleep(200 * time.Millisecond)
			failed := 0
			for i := 0; i < 50; i++ {
				if r := webtest.Do(t, "POST", fmt.Sprintf("http://%s/pub/fast/%d", addr, i), `{"n":1}`); r.Status != http.StatusOK {
					failed++
				}
			}
			close(stop)
			wg.Wait()
			if open.Load() != 300 || failed > 0 {
				t.Errorf("with %d slow clients connected, %d of 50 requests failed; want none", open.Load(), failed)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, s := range rec.seen {
				if strings.Contains(s.request, "/slow") {
					t.Fatalf("the upstream saw a slow client's request %q", s.request)
				}
			}
			if len(rec.conns) > 10 {
				t.Errorf("the upstream had %d connections; the 50 requests need a few, and the slow clients none", len(rec.conns))
			}
		})
	}
}

// TestHandedOverRequestsOutliveClosedPooledConnections: a request the loops hand to net/http
// (HTTP/1.0) after the upstream closed its idle pooled connections is sent on a new one,
// never answered 502.
func TestHandedOverRequestsOutliveClosedPooledConnections(t *testing.T) {
	var conns atomic.Int32
	up := tcpUpstream(t, func(c net.Conn) {
		conns.Add(1)
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		// Keep-alive, then closed while idle: the gateway pools a connection the upstream drops.
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(30 * time.Millisecond)
	})
	f := startGateway(t, "routes:\n  - {name: a, prefix: /, upstreams: [{url: "+up+"}]}\n", map[string]string{"GATEWAY_ENGINE": "loop"})
	addr := strings.TrimPrefix(f.url, "http://")
	for i := 0; i < 10; i++ {
		c, br := dialRaw(t, addr)
		send(t, c, fmt.Sprintf("GET /r%d HTTP/1.0\r\n\r\n", i))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d, handed over after the upstream closed its pooled connection: %d, want 200", i, resp.StatusCode)
		}
		time.Sleep(60 * time.Millisecond) // the upstream closes the idle connection meanwhile
	}
	if conns.Load() != 10 {
		t.Errorf("the upstream accepted %d connections for 10 requests; want one each", conns.Load())
	}
}
