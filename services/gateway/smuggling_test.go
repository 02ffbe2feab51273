package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/gateway/h1"
)

// The smuggling suite: raw bytes sent to the gateway, judged by what reaches the upstream.
// Every case states the answers the client must get, whether the gateway must close the
// connection, and the requests the upstream must see, in order. The upstream records the raw
// bytes of every connection and reads them as a typical origin does (net/http), answering
// every request it reads: a request the client did not send as one, smuggled past the
// gateway's routing, tokens and limits, shows up there as a request the case did not expect.
// The cases themselves are in smuggling_cases_test.go.

// suiteRoutes: /pub and /ws are routed to the recording upstream (/ws may switch to
// WebSocket); /priv needs a token; /internal is routed nowhere, so a request for it that the
// upstream sees went around the gateway.
const suiteRoutes = `
routes:
  - {name: pub, prefix: /pub, upstreams: [{url: %[1]s}]}
  - {name: ws, prefix: /ws, upgrades: [websocket], upstreams: [{url: %[1]s}]}
  - {name: priv, prefix: /priv, auth: required, upstreams: [{url: %[1]s}]}
`

// TestSmuggling runs the suite against every engine.
func TestSmuggling(t *testing.T) {
	cases := smugglingCases()
	for _, engine := range suiteEngines {
		t.Run(engine, func(t *testing.T) {
			rec := newRecorder(t)
			f := startGateway(t, fmt.Sprintf(suiteRoutes, rec.url), map[string]string{"GATEWAY_ENGINE": engine})
			addr := strings.TrimPrefix(f.url, "http://")
			res := runSuite(t, addr, rec, cases)
			t.Logf("%s: %d cases, %d failed; in %d a request hidden in another reached the upstream",
				engine, len(cases), res.failed, res.smuggled)
		})
	}
}

// suiteEngines are the engines the suite runs against; SMUGGLING_ENGINES=a,b picks others
// (for measuring an engine that is no longer built in).
var suiteEngines = func() []string {
	if v := os.Getenv("SMUGGLING_ENGINES"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"loop", "nethttp"}
}()

// rawCase is one case of the suite. In its strings § stands for the case's own path segment
// (c<number>), so that what the upstream sees can be told apart by case.
type rawCase struct {
	family, name string
	send         string   // the bytes the client writes, at once
	answers      []int    // the statuses the client must get, in order (interim 1xx other than 101 skipped)
	closed       bool     // the gateway must close the connection after the last answer
	upstream     []string // "METHOD target" of every complete request the upstream must see, in order
	tunnel       string   // after a 101: bytes sent through once it came, which must come back (the upstream echoes)
	halfClose    bool     // the client closes its side after send
}

// suiteResult counts the failed cases.
type suiteResult struct{ failed, smuggled int }

func runSuite(t *testing.T, addr string, rec *recorder, cases []rawCase) suiteResult {
	t.Helper()
	clientFail := map[int][]string{}
	for i, c := range cases {
		if msg := c.run(addr, caseTag(i)); msg != "" {
			clientFail[i] = append(clientFail[i], msg)
		}
	}
	// What the upstream saw, by case.
	time.Sleep(100 * time.Millisecond) // a request smuggled after the last answer
	seen, unattributed, problems := rec.byCase()
	for _, p := range problems {
		t.Errorf("upstream: %s", p)
	}
	for _, s := range unattributed {
		t.Errorf("upstream saw a request of no case: %q", s)
	}
	var res suiteResult
	for i, c := range cases {
		tag := caseTag(i)
		var want []string
		for _, u := range c.upstream {
			want = append(want, strings.ReplaceAll(u, "§", tag))
		}
		msgs := clientFail[i]
		got := seen[i]
		if !slices.Equal(got, want) {
			msgs = append(msgs, fmt.Sprintf("upstream saw %q, want %q", got, want))
		}
		// Smuggled: the upstream saw a request for /internal, which the gateway routes nowhere,
		// so it can only have come hidden in another request.
		smuggled := slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "/internal/") })
		if len(msgs) > 0 {
			res.failed++
			if smuggled {
				res.smuggled++
			}
			t.Errorf("%s/%s (%s): %s\n  sent %q", c.family, c.name, tag, strings.Join(msgs, "; "), strings.ReplaceAll(c.send, "§", tag))
		}
	}
	return res
}

// caseTag is c and four digits: the cases compute their lengths for tags of that width.
func caseTag(i int) string { return fmt.Sprintf("c%04d", i) }

// run sends the case on a new connection and checks the answers; it returns what was wrong.
func (c rawCase) run(addr, tag string) string {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	send := strings.ReplaceAll(c.send, "§", tag)
	if _, err := io.WriteString(conn, send); err != nil {
		return "write: " + err.Error()
	}
	if c.halfClose {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	br := bufio.NewReader(conn)
	var got []int
	var problems []string
	for len(got) < len(c.answers) {
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			problems = append(problems, fmt.Sprintf("answer %d: %v", len(got)+1, err))
			break
		}
		if resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		got = append(got, resp.StatusCode)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			if c.tunnel != "" {
				if _, err := io.WriteString(conn, c.tunnel); err != nil {
					problems = append(problems, "write through the tunnel: "+err.Error())
					break
				}
				echo := make([]byte, len(c.tunnel))
				if _, err := io.ReadFull(br, echo); err != nil || string(echo) != c.tunnel {
					problems = append(problems, fmt.Sprintf("through the tunnel: %q (%v), want %q", echo, err, c.tunnel))
				}
			}
			break
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			problems = append(problems, fmt.Sprintf("answer %d body: %v", len(got), err))
			break
		}
		// An answer from the upstream names the request it answers: it must be one of this case's.
		if saw := resp.Header.Get("X-Saw"); saw != "" && !strings.Contains(saw, "/"+tag+"/") {
			problems = append(problems, fmt.Sprintf("answer %d is the upstream's answer to another request: %q", len(got), saw))
		}
		// An answer of the gateway's own is a problem document.
		if resp.Header.Get("X-Saw") == "" && resp.StatusCode >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			problems = append(problems, fmt.Sprintf("answer %d: %d with Content-Type %q (%q), want application/problem+json", len(got), resp.StatusCode, resp.Header.Get("Content-Type"), body))
		}
	}
	if !slices.Equal(got, c.answers) {
		problems = append(problems, fmt.Sprintf("answers %v, want %v", got, c.answers))
	}
	if c.closed && len(problems) == 0 {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		if b, err := br.ReadByte(); err == nil {
			rest, _ := br.Peek(br.Buffered())
			problems = append(problems, fmt.Sprintf("connection still open after the last answer; it sent %q", append([]byte{b}, rest...)))
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			problems = append(problems, "connection still open after the last answer")
		}
	}
	return strings.Join(problems, "; ")
}

// recorder is an upstream that keeps the raw bytes of every connection and answers every
// request net/http reads from them: 200 naming the request in X-Saw, or 101 to any request
// that asks to switch protocols. After a 101 to h2c it goes on reading HTTP/1.1 requests, as
// an origin speaking h2c would go on serving what comes through; after any other 101 it echoes.
// A request for a path containing /double is answered twice.
type recorder struct {
	url string

	mu       sync.Mutex
	conns    []*bytes.Buffer
	upgraded []bool
	seen     []recorded
	problems []string
}

type recorded struct {
	conn     int
	request  string // METHOD target
	complete bool   // its body was read to its end
}

func newRecorder(t testing.TB) *recorder {
	r := &recorder{}
	r.url = tcpUpstream(t, r.serve)
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (r *recorder) serve(c net.Conn) {
	defer c.Close()
	r.mu.Lock()
	n := len(r.conns)
	raw := &bytes.Buffer{}
	r.conns = append(r.conns, raw)
	r.upgraded = append(r.upgraded, false)
	r.mu.Unlock()
	br := bufio.NewReader(io.TeeReader(c, lockedWriter{&r.mu, raw}))
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
				r.problem("connection %d: the upstream could not read a request: %v", n, err)
			}
			return
		}
		_, berr := io.Copy(io.Discard, req.Body)
		what := req.Method + " " + req.RequestURI
		r.mu.Lock()
		r.seen = append(r.seen, recorded{conn: n, request: what, complete: berr == nil})
		r.mu.Unlock()
		if berr != nil {
			return
		}
		if len(req.Trailer) > 0 {
			r.problem("%s came with trailer fields %v", what, req.Trailer)
		}
		for _, name := range []string{HeaderUserID, HeaderUserRoles, "X_User_Id", "X_User_Roles"} {
			if _, ok := req.Header[name]; ok {
				r.problem("%s came with %s: %q, which only the gateway may set", what, name, req.Header[name])
			}
		}
		if proto := req.Header.Get("Upgrade"); proto != "" && strings.Contains(strings.ToLower(req.Header.Get("Connection")), "upgrade") {
			r.mu.Lock()
			r.upgraded[n] = true
			r.mu.Unlock()
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", proto)
			if strings.EqualFold(proto, "h2c") {
				continue
			}
			_ = c.SetReadDeadline(time.Time{})
			_, _ = io.Copy(c, br)
			return
		}
		answer := func(saw string) string {
			body := "saw " + saw
			if req.Method == http.MethodHead {
				body = ""
			}
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Saw: %s\r\nContent-Length: %d\r\n\r\n%s", saw, len(body), body)
		}
		out := answer(what)
		if strings.Contains(req.RequestURI, "/double") {
			out += answer("EXTRA " + req.RequestURI)
		}
		if _, err := io.WriteString(c, out); err != nil {
			return
		}
	}
}

func (r *recorder) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

var caseInTarget = regexp.MustCompile(`/c([0-9]+)/`)

// byCase is the complete requests the upstream saw, by the case their target names; those
// that name none; and what the upstream found wrong, with every connection's raw bytes read
// strictly by h1 (a message h1 frames otherwise than net/http is one the gateway must not send).
func (r *recorder) byCase() (seen map[int][]string, unattributed, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen = map[int][]string{}
	complete := make([]int, len(r.conns))
	for _, s := range r.seen {
		if !s.complete {
			continue
		}
		complete[s.conn]++
		m := caseInTarget.FindStringSubmatch(s.request)
		if m == nil {
			unattributed = append(unattributed, s.request)
			continue
		}
		i, _ := strconv.Atoi(m[1])
		seen[i] = append(seen[i], s.request)
	}
	problems = append(problems, r.problems...)
	for n, raw := range r.conns {
		if r.upgraded[n] {
			continue // after a switch the bytes are not HTTP/1.1
		}
		if got, err := strictCount(raw.Bytes()); err != nil || got != complete[n] {
			problems = append(problems, fmt.Sprintf("connection %d: h1 reads %d requests (%v) where net/http read %d complete ones, in %q", n, got, err, complete[n], raw.Bytes()))
		}
	}
	return seen, unattributed, problems
}

// strictCount is how many whole requests h1 frames in b, which must end at a message's end
// or inside one.
func strictCount(b []byte) (int, error) {
	var h h1.Head
	n := 0
	for len(b) > 0 {
		ok, err := h1.ParseRequest(b, 1<<20, &h)
		if err != nil {
			return n, err
		}
		if !ok {
			return n, nil
		}
		b = b[h.Size:]
		switch h.Body {
		case h1.Length:
			if int64(len(b)) < h.Length {
				return n, nil
			}
			b = b[h.Length:]
		case h1.Chunked:
			var ch h1.Chunks
			used, done, err := ch.Scan(b)
			if err != nil {
				return n, err
			}
			if !done {
				return n, nil
			}
			b = b[used:]
		}
		n++
	}
	return n, nil
}

// FuzzGatewayFraming drives the Connection field, a framing field line and the body through
// the whole gateway, on both engines, each request carrying a request for /internal after
// what its framing says is its end: whatever the gateway answers, the upstream must never see
// that request, and what it sends the upstream must be framed one way only (strictCount).
// `go test` runs the seeds; `go test -fuzz FuzzGatewayFraming ./services/gateway` searches.
func FuzzGatewayFraming(f *testing.F) {
	for _, seed := range []struct{ conn, framing, body string }{
		{"Content-Length", "Content-Length: 5", "hello"},
		{"keep-alive, content-length", "Content-Length: 5", "hello"},
		{"Transfer-Encoding", "Transfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n"},
		{"close, Transfer-Encoding", "Transfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n"},
		{"Trailer", "Transfer-Encoding: chunked", "0\r\nContent-Length: 5\r\n\r\n"},
		{"Host", "Content-Length: 0", ""},
		{"upgrade, HTTP2-Settings", "Upgrade: h2c", ""},
		{"upgrade", "Upgrade: websocket", ""},
		{"x-custom", "Content-Length: 5\r\nTransfer-Encoding: chunked", "0\r\n\r\n"},
		{"keep-alive", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity", "5\r\nhello\r\n0\r\n\r\n"},
		{"keep-alive", "Transfer_Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n"},
		{"keep-alive", "Content-Length: 5\r\nContent-Length: 0", "hello"},
		{"", "Transfer-Encoding: chunked", "5;a\rb\r\nhello\r\n0\r\n\r\n"},
		{"", "Content-Length: 3", "hello"},
	} {
		f.Add(seed.conn, seed.framing, seed.body)
	}
	rec := newRecorder(f)
	var addrs []string
	for _, engine := range suiteEngines {
		g := startGateway(f, fmt.Sprintf(suiteRoutes, rec.url), map[string]string{"GATEWAY_ENGINE": engine})
		addrs = append(addrs, strings.TrimPrefix(g.url, "http://"))
	}
	n := 0
	f.Fuzz(func(t *testing.T, conn, framing, body string) {
		for _, addr := range addrs {
			n++
			tag := fmt.Sprintf("f%d", n)
			msg := "POST /ws/" + tag + "/outer HTTP/1.1\r\nHost: x\r\nConnection: " + conn + "\r\n" + framing + "\r\n\r\n" + body +
				"GET /internal/" + tag + "/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = io.WriteString(c, msg)
			_ = c.(*net.TCPConn).CloseWrite() // nothing more comes: the gateway answers what it read, then closes
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
		time.Sleep(10 * time.Millisecond)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, s := range rec.seen {
			if strings.Contains(s.request, "/internal/") {
				t.Fatalf("the upstream saw %q: a request hidden in another went around the gateway", s.request)
			}
		}
		if len(rec.problems) > 0 {
			t.Fatalf("upstream: %s", strings.Join(rec.problems, "; "))
		}
		for i, raw := range rec.conns {
			if rec.upgraded[i] {
				continue
			}
			if _, err := strictCount(raw.Bytes()); err != nil {
				t.Fatalf("the gateway sent the upstream bytes h1 cannot frame (%v): %q", err, raw.Bytes())
			}
		}
	})
}
