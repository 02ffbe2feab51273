package gateway

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// TestLoopEngineHTTP: what the event-loop engine does with HTTP/1.1 itself, on raw
// connections, where net/http used to do it: pipelining, Expect, large bodies both ways with
// backpressure, bodies delimited by the connection's close, message framing it must refuse,
// connection reuse, and the requests it hands to the net/http engine.
func TestLoopEngineHTTP(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (8<<20)/16) // 8 MiB
	var keepAliveConns sync.Map                                 // the upstream connections that served "?keepalive" requests
	up, _, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == "keepalive" {
			keepAliveConns.Store(r.RemoteAddr, true)
		}
		switch r.URL.Path {
		default:
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s?%s len=%d te=%v user=%q", r.Method, r.URL.Path, r.URL.RawQuery, len(b), r.TransferEncoding, r.Header.Get(HeaderUserID))
		case "/sum":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = w.Write(big)
		case "/chunks":
			for i := 0; i < 50; i++ {
				fmt.Fprintf(w, "chunk %d\n", i)
				w.(http.Flusher).Flush()
			}
		}
	})
	// An HTTP/1.0-style answer: no length, the body ends when the connection closes.
	untilClose := tcpUpstream(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
		}
	})
	f := startGateway(t, fmt.Sprintf(`
routes:
  - {name: private, prefix: /private, auth: required, upstreams: [{url: %[1]s}]}
  - {name: close, prefix: /close, upstreams: [{url: %[2]s}]}
  - {name: up, prefix: /, body_limit_bytes: 16777216, upstreams: [{url: %[1]s}]}
`, up.URL, untilClose), map[string]string{"GATEWAY_ENGINE": "loop"})
	addr := strings.TrimPrefix(f.url, "http://")

	t.Run("pipelined requests are answered in order", func(t *testing.T) {
		c, br := dialRaw(t, addr)
		send(t, c, "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /echo?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
		for _, want := range []string{"GET /echo?n=1 len=0", "POST /echo?n=2 len=3", "GET /echo?n=3 len=0"} {
			if got := readBody(t, br, "GET"); !strings.HasPrefix(got, want) {
				t.Errorf("answer %q, want %q", got, want)
			}
		}
	})

	t.Run("Expect 100-continue", func(t *testing.T) {
		c, br := dialRaw(t, addr)
		send(t, c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		status, _ := br.ReadString('\n')
		if !strings.HasPrefix(status, "HTTP/1.1 100 ") {
			t.Fatalf("first line %q, want 100 Continue before the body is sent", status)
		}
		if blank, _ := br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("100 Continue followed by %q", blank)
		}
		send(t, c, "hello")
		if got := readBody(t, br, "POST"); !strings.HasPrefix(got, "POST /echo? len=5") {
			t.Errorf("answer %q", got)
		}
	})

	t.Run("8 MiB each way, unchanged", func(t *testing.T) {
		resp, err := http.Post(f.url+"/sum", "application/octet-stream", bytes.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(big)
		if want := fmt.Sprintf("%d %s", len(big), hex.EncodeToString(sum[:])); string(got) != want {
			t.Errorf("upload: upstream got %q, want %q", got, want)
		}
		resp, err = http.Get(f.url + "/big")
		if err != nil {
			t.Fatal(err)
		}
		down, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(down, big) || resp.ContentLength != int64(len(big)) {
			t.Errorf("download: %d bytes (Content-Length %d), equal %v; want the %d sent", len(down), resp.ContentLength, bytes.Equal(down, big), len(big))
		}
	})

	t.Run("chunked response passes coded", func(t *testing.T) {
		c, br := dialRaw(t, addr)
		send(t, c, "GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || len(resp.TransferEncoding) != 1 || strings.Count(string(body), "chunk ") != 50 {
			t.Errorf("TE %v, %d chunks, %v", resp.TransferEncoding, strings.Count(string(body), "chunk "), err)
		}
	})

	t.Run("a body delimited by the upstream's close ends the client's connection too", func(t *testing.T) {
		c, br := dialRaw(t, addr)
		send(t, c, "GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "until the end" || !resp.Close {
			t.Errorf("body %q (%v), Connection: close %v", body, err, resp.Close)
		}
	})

	t.Run("framing that could smuggle a request is refused", func(t *testing.T) {
		for _, raw := range []string{
			"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
			"GET /echo HTTP/1.1\nHost: x\n\n",
			"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
			"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		} {
			c, br := dialRaw(t, addr)
			send(t, c, raw)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Errorf("%q: %v", raw, err)
				continue
			}
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 && resp.StatusCode != 501 || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%q: %d %s, want 400 (or 501) problem+json", raw, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("%q: the connection stayed open after a message whose end is unknown", raw)
			}
		}
	})

	t.Run("one upstream connection serves a client's keep-alive requests", func(t *testing.T) {
		c, br := dialRaw(t, addr)
		for i := 0; i < 20; i++ {
			send(t, c, "GET /echo?keepalive HTTP/1.1\r\nHost: x\r\n\r\n")
			readBody(t, br, "GET")
		}
		// Counted by the connections the requests came on, not by the upstream's accepts: a
		// connection an earlier test dialed can be accepted late, within this one's window.
		n := 0
		keepAliveConns.Range(func(_, _ any) bool { n++; return true })
		if n != 1 {
			t.Errorf("20 requests on one connection came to the upstream on %d connections, want one", n)
		}
	})

	t.Run("Connection: close is honoured", func(t *testing.T) {
		c, br := dialRaw(t, addr)
		send(t, c, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := br.ReadByte(); err != io.EOF || !resp.Close {
			t.Errorf("after Connection: close: read %v, response Close %v; want EOF and Connection: close", err, resp.Close)
		}
	})

	t.Run("what the loop hands to the net/http engine", func(t *testing.T) {
		for _, tc := range []struct {
			raw, want string
			status    int
		}{
			{"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", `"ok"`, 200},
			{"GET /echo?v=10 HTTP/1.0\r\n\r\n", "GET /echo?v=10 len=0", 200},
			// Routes are chosen on the decoded path; one with dot segments, which an upstream
			// may resolve to a path of another route, is refused.
			{"GET /public/../private/x HTTP/1.1\r\nHost: x\r\n\r\n", "dot segments", 400},
			{"GET /public/%2e%2e/private/x HTTP/1.1\r\nHost: x\r\n\r\n", "dot segments", 400},
			{"GET /private/%78 HTTP/1.1\r\nHost: x\r\n\r\n", "", 401},
			{"GET /%65cho?v=11 HTTP/1.1\r\nHost: x\r\n\r\n", "GET /echo?v=11", 200},
		} {
			c, br := dialRaw(t, addr)
			send(t, c, tc.raw)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Errorf("%q: %v", tc.raw, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Errorf("%q: %d %q, want %d with %q", tc.raw, resp.StatusCode, body, tc.status, tc.want)
			}
		}
		// The connection handed over goes on serving, through the other engine.
		c, br := dialRaw(t, addr)
		send(t, c, "GET /%65cho?before=1 HTTP/1.1\r\nHost: x\r\n\r\n")
		readBody(t, br, "GET")
		send(t, c, "GET /echo?after=1 HTTP/1.1\r\nHost: x\r\n\r\n")
		if got := readBody(t, br, "GET"); !strings.HasPrefix(got, "GET /echo?after=1") {
			t.Errorf("after the hand-over: %q", got)
		}
	})

	t.Run("the built-in endpoints keep a connection in the loop", func(t *testing.T) {
		handoffs := func() string {
			return grepLines(string(webtest.Do(t, "GET", f.url+"/metrics", nil).Body), "gateway_loop_handoffs_total{")
		}
		before := handoffs()
		c, br := dialRaw(t, addr)
		for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/metrics", "/echo"} {
			send(t, c, "GET "+p+" HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || len(body) == 0 {
				t.Errorf("GET %s: %d with %d bytes", p, resp.StatusCode, len(body))
			}
		}
		if after := handoffs(); after != before {
			t.Errorf("hand-overs went from %q to %q: a built-in endpoint took the connection out of the loop", before, after)
		}
		send(t, c, "GET /e%63ho HTTP/1.1\r\nHost: x\r\n\r\n")
		readBody(t, br, "GET")
		if after := handoffs(); !strings.Contains(after, `reason="path"`) || after == before {
			t.Errorf("a percent-encoded path was not counted as handed over: %q", after)
		}
	})

	t.Run("a token verified off the loop", func(t *testing.T) {
		token := f.issuer.Token(t, "user-loop")
		for i := 0; i < 2; i++ { // verified, then from the cache
			r := webtest.Do(t, "GET", f.url+"/private/x", nil, "Authorization", "Bearer "+token)
			if r.Status != 200 || !strings.Contains(string(r.Body), `user="user-loop"`) {
				t.Errorf("try %d: %d %s", i, r.Status, r.Body)
			}
		}
	})
}

// TestLoopEngineDropsUpstreamConnectionsClosedWhileIdle: an upstream that closes keep-alive
// connections after a short idle time costs no 502.
func TestLoopEngineDropsUpstreamConnectionsClosedWhileIdle(t *testing.T) {
	up := tcpUpstream(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	f := startGateway(t, fmt.Sprintf("routes:\n  - {name: up, prefix: /, upstreams: [{url: %s}]}\n", up), map[string]string{"GATEWAY_ENGINE": "loop"})
	for i := 0; i < 3; i++ {
		if r := webtest.Do(t, "GET", f.url+"/x", nil); r.Status != 200 {
			t.Errorf("request %d after the upstream closed its idle connection: %d %s", i, r.Status, r.Body)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// readBody reads one response to a request with method and returns its body.
func readBody(t *testing.T, br *bufio.Reader, method string) string {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLoopEngineReadsWhatCameDuringARequest: bytes that arrive while a request is in flight,
// when the loop does not read the connection, are read once it is answered: a pipelined
// request sent late is answered, and a client that closed its side has its connection closed
// after its answer, not at the idle timeout.
func TestLoopEngineReadsWhatCameDuringARequest(t *testing.T) {
	up := tcpUpstream(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond) // the next bytes come meanwhile
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
		}
	})
	f := startGateway(t, "routes:\n  - {name: a, prefix: /, upstreams: [{url: "+up+"}]}\n", map[string]string{"GATEWAY_ENGINE": "loop"})
	addr := strings.TrimPrefix(f.url, "http://")

	c, br := dialRaw(t, addr)
	send(t, c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(10 * time.Millisecond)
	send(t, c, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for _, want := range []string{"/one", "/two"} {
		if got := readBody(t, br, "GET"); got != want {
			t.Fatalf("answer %q, want %q", got, want)
		}
	}

	c, br = dialRaw(t, addr)
	send(t, c, "GET /three HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(10 * time.Millisecond)
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if got := readBody(t, br, "GET"); got != "/three" {
		t.Fatalf("answer %q, want /three", got)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer to a client that closed its side: %v, want the connection closed", err)
	}
}
