package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/gateway/h1"
)

// TestCheckRequest: one row per rule of framing.go, each with the answer it gives; the rows
// that pass show where each rule stops.
func TestCheckRequest(t *testing.T) {
	for _, tt := range []struct {
		name, head string
		status     int // 0: passes
	}{
		{"plain GET", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", 405},
		{"unknown method", "PROPFIND /a HTTP/1.1\r\nHost: x\r\n\r\n", 501},
		{"lower-case method", "get /a HTTP/1.1\r\nHost: x\r\n\r\n", 501},
		{"TRACE", "TRACE /a HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"relative target", "GET a HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"asterisk with OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"asterisk with GET", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"absolute http", "GET http://shop.example/a?b HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"absolute HTTPS, no path", "GET HTTPS://shop.example:8443 HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"absolute with userinfo", "GET http://u@shop.example/a HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"absolute ftp", "GET ftp://shop.example/a HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"no Host on HTTP/1.1", "GET /a HTTP/1.1\r\n\r\n", 400},
		{"no Host on HTTP/1.0", "GET /a HTTP/1.0\r\n\r\n", 0},
		{"two Host fields", "GET /a HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n", 400},
		{"invalid Host", "GET /a HTTP/1.1\r\nHost: x,y\r\n\r\n", 400},
		{"two Content-Length fields", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400},
		{"Connection names Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, content-length\r\nContent-Length: 1\r\n\r\n", 400},
		{"Connection names Transfer-Encoding", "POST /a HTTP/1.1\r\nHost: x\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"Connection names Host", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: HOST\r\n\r\n", 400},
		{"Connection names Trailer", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: Trailer\r\n\r\n", 400},
		{"Connection names another field", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: X-Foo, Upgrade\r\n\r\n", 0},
		{"Expect 100-continue", "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", 0},
		{"other Expect", "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n", 417},
		{"Content_Length", "POST /a HTTP/1.1\r\nHost: x\r\nContent_Length: 5\r\n\r\n", 400},
		{"transfer_encoding", "POST /a HTTP/1.1\r\nHost: x\r\ntransfer_encoding: chunked\r\n\r\n", 400},
		{"another field with _", "GET /a HTTP/1.1\r\nHost: x\r\nX_Foo: 1\r\n\r\n", 0},
		{"GET with a body", "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n", 400},
		{"HEAD chunked", "HEAD /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"GET with Content-Length 0", "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 0},
		{"DELETE with a body", "DELETE /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n", 0},
	} {
		var h h1.Head
		ok, err := h1.ParseRequest([]byte(tt.head), headLimit, &h)
		if !ok || err != nil {
			t.Fatalf("%s: h1 does not parse the head: %v", tt.name, err)
		}
		r := checkRequest(&h)
		switch {
		case tt.status == 0 && r != nil:
			t.Errorf("%s: refused %d %q, want it passed", tt.name, r.status, r.detail)
		case tt.status != 0 && (r == nil || r.status != tt.status):
			t.Errorf("%s: %v, want %d", tt.name, r, tt.status)
		}
	}
}

// TestParseRefusal: what h1 cannot parse gets RFC 9112's answer.
func TestParseRefusal(t *testing.T) {
	for _, tt := range []struct {
		head   string
		status int
	}{
		{"GET /a HTTP/1.1\r\nX : y\r\n\r\n", 400},
		{"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
		{"GET /a HTTP/1.1\r\nX: " + strings.Repeat("a", headLimit) + "\r\n\r\n", 431},
	} {
		var h h1.Head
		_, err := h1.ParseRequest([]byte(tt.head), headLimit, &h)
		if err == nil {
			t.Errorf("%.40q: parsed", tt.head)
			continue
		}
		if r := parseRefusal(err); r.status != tt.status {
			t.Errorf("%.40q: %d %q, want %d", tt.head, r.status, r.detail, tt.status)
		}
	}
}

func TestValidHost(t *testing.T) {
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"shop.example", true}, {"shop.example:8080", true}, {"127.0.0.1", true}, {"[::1]", true}, {"[::1]:80", true},
		{"xn--bcher-kva.example", true}, {"a_b.example", true}, {"a%20b", true}, {"x:", true},
		{"", false}, {":80", false}, {"u@x", false}, {"x/y", false}, {"x,y", false}, {"x y", false}, {"x:y", false},
		{"[::1", false}, {"[::1]x", false}, {"[::g]", false}, {"x;y", false}, {"x?y", false}, {"x\\y", false}, {"é.example", false},
	} {
		if got := validHost([]byte(tt.host)); got != tt.ok {
			t.Errorf("validHost(%q) = %v, want %v", tt.host, got, tt.ok)
		}
	}
}

func TestIsIdentityField(t *testing.T) {
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"X-User-Id", true}, {"x-user-id", true}, {"X_User_Id", true}, {"x_user-roles", true}, {"X-USER-ROLES", true},
		{"X-User-Idx", false}, {"X-User", false}, {"X-Forwarded-For", false}, {"XUser-Id", false},
	} {
		if got := isIdentityField([]byte(tt.name)); got != tt.want {
			t.Errorf("isIdentityField(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAllowedUpgrade(t *testing.T) {
	r := &Route{Upgrades: []string{"websocket"}}
	for _, tt := range []struct {
		route   *Route
		upgrade string
		want    string
	}{
		{r, "websocket", "websocket"}, {r, "WebSocket", "websocket"}, {r, "h2c", ""}, {r, "websocket, h2c", ""},
		{&Route{}, "websocket", ""}, {nil, "websocket", ""},
	} {
		if got := allowedUpgrade(tt.route, []byte(tt.upgrade)); got != tt.want {
			t.Errorf("allowedUpgrade(%v, %q) = %q, want %q", tt.route, tt.upgrade, got, tt.want)
		}
	}
	if _, err := ParseTable([]byte("routes:\n  - {name: a, prefix: /a, upgrades: [h2c], upstreams: [{url: http://x}]}\n")); err == nil || !strings.Contains(err.Error(), "h2c cannot be allowed") {
		t.Errorf("a route allowing h2c: %v", err)
	}
	if _, err := ParseTable([]byte("routes:\n  - {name: a, prefix: /a, upgrades: [\"web socket\"], upstreams: [{url: http://x}]}\n")); err == nil || !strings.Contains(err.Error(), "not a protocol name") {
		t.Errorf("a route allowing a protocol that is no token: %v", err)
	}
}

// scriptConn is a connection whose reads are the script's parts, one a read, then EOF; a
// part "timeout" is a read that hits its deadline.
type scriptConn struct {
	net.Conn
	parts []string
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	part := c.parts[0]
	c.parts = c.parts[1:]
	if part == "timeout" {
		return 0, timeoutErr{}
	}
	return copy(p, part), nil
}

func (c *scriptConn) SetReadDeadline(time.Time) error { return nil }

// TestGuardHandsOverWhatItJudged: net/http reads through the guard exactly the requests it
// accepted, whole and in order, the refusal's own request in place of the first it refused,
// and nothing after it; a deadline met while waiting for bytes is not the connection's end.
func TestGuardHandsOverWhatItJudged(t *testing.T) {
	g := newGuard(&Table{}, clientLimits{header: time.Second, body: 1 << 20})
	first := "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	second := "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n"
	refused := "GET /c HTTP/1.1\r\nHost: u@x\r\n\r\n"
	after := "GET /d HTTP/1.1\r\nHost: x\r\n\r\n"
	c := g.conn(&scriptConn{parts: []string{first[:10], "timeout", first[10:] + second[:30], second[30:] + refused + after}}, nil)
	var got bytes.Buffer
	buf := make([]byte, 7)
	var errs []error
	for range 200 {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			errs = append(errs, err)
			if !isTimeout(err) {
				break
			}
		}
	}
	if want := first + second + string(g.synthetic); got.String() != want {
		t.Errorf("net/http read\n%q\nwant\n%q", got.String(), want)
	}
	if len(errs) != 2 || !isTimeout(errs[0]) || isTimeout(errs[1]) {
		t.Errorf("errors %v, want the deadline once, then the end", errs)
	}
	if c.refusal == nil || c.refusal.status != 400 || !strings.Contains(c.refusal.detail, "Host") {
		t.Errorf("refusal %v, want the invalid Host's 400", c.refusal)
	}

	broken := g.conn(&scriptConn{parts: []string{"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX" + after}}, nil)
	got.Reset()
	var err error
	for err == nil {
		var n int
		n, err = broken.Read(buf)
		got.Write(buf[:n])
	}
	if !errors.Is(err, errBrokenBody) || strings.Contains(got.String(), "/d") || broken.refusal != errBadChunks {
		t.Errorf("a broken chunked body: read %q, then %v (refusal %v); want the body up to the break, then errBrokenBody", got.String(), err, broken.refusal)
	}
}
