package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestUpgrades: a request to switch protocols (WebSocket's handshake) reaches the upstream
// with its Connection and Upgrade fields, the 101 comes back, and from then on the gateway
// carries bytes both ways until a side closes. A 101 nobody asked for is a bad gateway.
func TestUpgrades(t *testing.T) {
	for _, engine := range []string{"nethttp", "loop"} {
		t.Run(engine, func(t *testing.T) { testUpgrades(t, engine) })
	}
}

func testUpgrades(t *testing.T, engine string) {
	up := tcpUpstream(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.URL.Path == "/rogue" {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			return
		}
		if !strings.EqualFold(req.Header.Get("Upgrade"), "echo") || !strings.Contains(strings.ToLower(req.Header.Get("Connection")), "upgrade") {
			fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_, _ = io.Copy(c, br) // the new protocol: everything back
	})
	f := startGateway(t, fmt.Sprintf("routes:\n  - {name: up, prefix: /, upgrades: [echo], upstreams: [{url: %s}]}\n", up), map[string]string{"GATEWAY_ENGINE": engine})
	addr := strings.TrimPrefix(f.url, "http://")

	c, br := dialRaw(t, addr)
	send(t, c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "echo") {
		t.Fatalf("upgrade answered %d, Upgrade %q; want 101 echo", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	for _, msg := range []string{"ping", strings.Repeat("x", 300<<10), "pong"} {
		send(t, c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("through the tunnel: %d bytes back (%v), want the %d sent", len(got), err, len(msg))
		}
	}

	c2, br2 := dialRaw(t, addr)
	send(t, c2, "GET /rogue HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br2, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 502 {
		t.Errorf("a 101 to a request that asked for no upgrade = %d, want 502", resp.StatusCode)
	}
}
