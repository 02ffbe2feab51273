package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPEdges: what a proxy must get right where HTTP/1.1 is subtle, on both engines.
func TestHTTPEdges(t *testing.T) {
	for _, engine := range []string{"nethttp", "loop"} {
		t.Run(engine, func(t *testing.T) { testHTTPEdges(t, engine) })
	}
}

func testHTTPEdges(t *testing.T, engine string) {
	release := make(chan struct{})
	up, _, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo-headers":
			for _, h := range []string{"Connection", "Keep-Alive", "Te", "X-Secret", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				fmt.Fprintf(w, "%s=%s\n", h, r.Header.Get(h))
			}
		case "/echo-body":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%d %v", len(b), r.TransferEncoding)
		case "/stream":
			w.Header().Set("Content-Type", "text/plain")
			w.(http.Flusher).Flush()
			fmt.Fprint(w, strings.Repeat("a", 64<<10))
			w.(http.Flusher).Flush()
			<-release // the client has the first part before the upstream finishes
			fmt.Fprint(w, "end")
		case "/hop":
			w.Header().Set("Connection", "X-Internal-Hop")
			w.Header().Set("X-Internal-Hop", "1")
			fmt.Fprint(w, "ok")
		}
	})
	f := startGateway(t, fmt.Sprintf("routes:\n  - {name: up, prefix: /, upstreams: [{url: %s}]}\n", up.URL), map[string]string{"GATEWAY_ENGINE": engine})

	// Hop-by-hop headers, and those Connection names, stop at the gateway; X-Forwarded-* are set.
	req, _ := http.NewRequest("GET", f.url+"/echo-headers", nil)
	req.Header.Set("Connection", "X-Secret")
	req.Header.Set("X-Secret", "do-not-forward")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Te", "gzip")
	req.Host = "shop.example"
	body := do(t, req)
	for _, want := range []string{"X-Secret=\n", "Keep-Alive=\n", "Te=\n", "X-Forwarded-For=127.0.0.1\n", "X-Forwarded-Host=shop.example\n", "X-Forwarded-Proto=http\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("upstream saw\n%s\nwant %q", body, want)
		}
	}
	req, _ = http.NewRequest("GET", f.url+"/hop", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Internal-Hop") != "" {
		t.Error("a response header the upstream's Connection named reached the client")
	}

	// A chunked request body (no Content-Length) arrives whole.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 10; i++ {
			fmt.Fprint(pw, strings.Repeat("b", 1000))
		}
		pw.Close()
	}()
	req, _ = http.NewRequest("POST", f.url+"/echo-body", pr)
	if got := do(t, req); !strings.HasPrefix(got, "10000 ") {
		t.Errorf("chunked upload: upstream got %q, want 10000 bytes", got)
	}

	// A response streams: the client reads the first 64 KiB while the upstream still writes.
	resp, err = http.Get(f.url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 64<<10)
	readDone := make(chan error, 1)
	go func() { _, err := io.ReadFull(resp.Body, first); readDone <- err }()
	select {
	case err := <-readDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first 64 KiB did not arrive before the upstream finished: the gateway buffers responses")
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "end" {
		t.Errorf("rest of the stream = %q", rest)
	}

	// An oversized header section is refused, not passed on.
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /echo-headers HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("h", 2<<20))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.Contains(status, "431") && !strings.Contains(status, "400") {
		t.Errorf("a 2 MiB header got %q, want 431 (or 400)", strings.TrimSpace(status))
	}
}

func do(t *testing.T, req *http.Request) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
