package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name, msg string
		err       error
		body      Body
		length    int64
		close     bool
		expect    bool
		upgrade   bool
	}{
		{name: "get", msg: "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n", body: NoBody},
		{name: "content-length", msg: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", body: Length, length: 12},
		{name: "zero length", msg: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", body: NoBody},
		{name: "repeated equal lengths", msg: "POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", body: Length, length: 5},
		{name: "list of lengths", msg: "POST /a HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", err: ErrAmbiguousLength},
		{name: "chunked", msg: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", body: Chunked},
		{name: "chunked any case", msg: "POST /a HTTP/1.1\r\ntransfer-encoding: CHUNKED\r\n\r\n", body: Chunked},
		{name: "connection close", msg: "GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", close: true},
		{name: "http/1.0 closes", msg: "GET / HTTP/1.0\r\n\r\n", close: true},
		{name: "http/1.0 keep-alive", msg: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"},
		{name: "expect", msg: "PUT /a HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", body: Length, length: 3, expect: true},
		{name: "expect without body", msg: "GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"},
		{name: "upgrade", msg: "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", upgrade: true},
		{name: "upgrade field alone", msg: "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"},
		{name: "differing lengths", msg: "POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", err: ErrAmbiguousLength},
		{name: "length and chunked", msg: "POST /a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrAmbiguousLength},
		{name: "signed length", msg: "POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\n", err: ErrAmbiguousLength},
		{name: "huge length", msg: "POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", err: ErrAmbiguousLength},
		{name: "gzip coding", msg: "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", err: ErrTransferEncoding},
		{name: "chunked twice", msg: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", err: ErrAmbiguousLength},
		{name: "chunked not last", msg: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", err: ErrAmbiguousLength},
		{name: "coding on 1.0", msg: "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrAmbiguousLength},
		{name: "space before colon", msg: "GET / HTTP/1.1\r\nHost : x\r\n\r\n", err: ErrMalformed},
		{name: "folded line", msg: "GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n", err: ErrMalformed},
		{name: "bare LF", msg: "GET / HTTP/1.1\nHost: x\r\n\r\n", err: ErrMalformed},
		{name: "control byte in value", msg: "GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", err: ErrMalformed},
		{name: "space in target", msg: "GET /a b HTTP/1.1\r\n\r\n", err: ErrMalformed},
		{name: "no target", msg: "GET HTTP/1.1\r\n\r\n", err: ErrMalformed},
		{name: "http/2 preface", msg: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", err: ErrVersion},
		{name: "not http", msg: "GET / FTP/1.1\r\n\r\n", err: ErrMalformed},
		{name: "http/1.2", msg: "GET / HTTP/1.2\r\n\r\n", err: ErrVersion},
		{name: "http/1.10", msg: "GET / HTTP/1.10\r\n\r\n", err: ErrMalformed},
		{name: "http/1", msg: "GET / HTTP/1\r\n\r\n", err: ErrMalformed},
		{name: "gzip alone", msg: "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", err: ErrAmbiguousLength},
		{name: "two coding fields", msg: "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrAmbiguousLength},
		{name: "empty coding", msg: "POST /a HTTP/1.1\r\nTransfer-Encoding: ,chunked\r\n\r\n", err: ErrAmbiguousLength},
		{name: "no coding", msg: "POST /a HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n", err: ErrAmbiguousLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			ok, err := ParseRequest([]byte(tt.msg+"next"), 8192, &h)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !ok || h.Size != len(tt.msg) {
				t.Fatalf("complete %v size %d, want true %d", ok, h.Size, len(tt.msg))
			}
			if h.Body != tt.body || h.Length != tt.length || h.Close != tt.close || h.Expect100 != tt.expect || h.Upgrade != tt.upgrade {
				t.Fatalf("body %v length %d close %v expect %v upgrade %v; want %v %d %v %v %v",
					h.Body, h.Length, h.Close, h.Expect100, h.Upgrade, tt.body, tt.length, tt.close, tt.expect, tt.upgrade)
			}
		})
	}
}

func TestParseRequestFields(t *testing.T) {
	var h Head
	msg := "GET /p HTTP/1.1\r\nHost: shop.example\r\nX-Empty:\r\nX-Pad: \t v \t\r\n\r\n"
	if ok, err := ParseRequest([]byte(msg), 1024, &h); !ok || err != nil {
		t.Fatalf("ParseRequest: %v %v", ok, err)
	}
	if string(h.Method) != "GET" || string(h.Target) != "/p" || h.Minor != 1 || len(h.Fields) != 3 {
		t.Fatalf("head %q %q 1.%d, %d fields", h.Method, h.Target, h.Minor, len(h.Fields))
	}
	if got := string(h.Get("host")); got != "shop.example" {
		t.Errorf("Get(host) = %q", got)
	}
	if got := h.Get("X-Empty"); got == nil || len(got) != 0 {
		t.Errorf("Get(X-Empty) = %q, want empty and present", got)
	}
	if got := string(h.Get("x-pad")); got != "v" {
		t.Errorf("Get(x-pad) = %q, want the value without whitespace", got)
	}
	if h.Get("X-Absent") != nil {
		t.Error("Get of an absent field is not nil")
	}
}

func TestParseIncompleteAndLimit(t *testing.T) {
	msg := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	var h Head
	for i := range len(msg) {
		if ok, err := ParseRequest(msg[:i], 1024, &h); ok || err != nil {
			t.Fatalf("%d bytes: complete %v, error %v; want incomplete", i, ok, err)
		}
	}
	if _, err := ParseRequest(msg, len(msg)-1, &h); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := ParseRequest(bytes.Repeat([]byte("a"), 100), 100, &h); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("no end within the limit: %v, want ErrTooLarge", err)
	}
	if ok, err := ParseRequest(msg, len(msg), &h); !ok || err != nil {
		t.Fatalf("at the limit: %v %v", ok, err)
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name, method, msg string
		err               error
		body              Body
		length            int64
		close             bool
	}{
		{name: "length", method: "GET", msg: "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", body: Length, length: 11},
		{name: "no reason", method: "GET", msg: "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", body: Length, length: 1},
		{name: "chunked", method: "GET", msg: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", body: Chunked},
		{name: "until close", method: "GET", msg: "HTTP/1.1 200 OK\r\n\r\n", body: UntilClose, close: true},
		{name: "head", method: "HEAD", msg: "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", body: NoBody},
		{name: "no content", method: "DELETE", msg: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", body: NoBody},
		{name: "not modified", method: "GET", msg: "HTTP/1.1 304 Not Modified\r\n\r\n", body: NoBody},
		{name: "continue", method: "PUT", msg: "HTTP/1.1 100 Continue\r\n\r\n", body: NoBody},
		{name: "switching", method: "GET", msg: "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", body: Tunnel},
		{name: "connect", method: "CONNECT", msg: "HTTP/1.1 200 OK\r\n\r\n", body: Tunnel},
		{name: "close", method: "GET", msg: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", body: Length, length: 2, close: true},
		{name: "both", method: "GET", msg: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrAmbiguousLength},
		{name: "gzip", method: "GET", msg: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: ErrTransferEncoding},
		{name: "bad status", method: "GET", msg: "HTTP/1.1 2x0 OK\r\n\r\n", err: ErrMalformed},
		{name: "status under 100", method: "GET", msg: "HTTP/1.1 099 Odd\r\n\r\n", err: ErrMalformed},
		{name: "http/2", method: "GET", msg: "HTTP/2.0 200 OK\r\n\r\n", err: ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			ok, err := ParseResponse([]byte(tt.msg), 8192, []byte(tt.method), &h)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !ok || h.Size != len(tt.msg) || h.Body != tt.body || h.Length != tt.length || h.Close != tt.close {
				t.Fatalf("complete %v size %d body %v length %d close %v; want %d %v %d %v",
					ok, h.Size, h.Body, h.Length, h.Close, len(tt.msg), tt.body, tt.length, tt.close)
			}
		})
	}
}

func TestChunks(t *testing.T) {
	tests := []struct {
		name, body string
		err        bool
	}{
		{name: "one chunk", body: "5\r\nhello\r\n0\r\n\r\n"},
		{name: "several", body: "3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n"},
		{name: "extension", body: "3;name=\"v\"\r\nabc\r\n0;x\r\n\r\n"},
		{name: "trailers", body: "1\r\na\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n"},
		{name: "whitespace after the size", body: "3 \t\r\nabc\r\n0 \r\n\r\n"},
		{name: "whitespace before an extension", body: "3 ;e\r\nabc\r\n0\r\n\r\n", err: true},
		{name: "text after the size", body: "1 x\r\na\r\n0\r\n\r\n", err: true},
		{name: "upper hex", body: "B\r\nhello world\r\n0\r\n\r\n"},
		{name: "no size", body: "\r\nabc\r\n0\r\n\r\n", err: true},
		{name: "bad hex", body: "g\r\n", err: true},
		{name: "data longer than size", body: "2\r\nabc\r\n0\r\n\r\n", err: true},
		{name: "bare LF", body: "3\nabc\r\n0\r\n\r\n", err: true},
		{name: "huge size", body: "1000000000000000\r\n", err: true},
		{name: "folded trailer", body: "0\r\n x\r\n\r\n", err: true},
		{name: "trailer without colon", body: "0\r\n0\r\n\r\n", err: true},
		{name: "trailer name with space", body: "0\r\nX A: 1\r\n\r\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.body + "NEXT")
			// Whole, then a byte at a time: the end is found wherever the reads split.
			for _, step := range []int{len(in), 1} {
				var c Chunks
				total, done := 0, false
				var err error
				for off := 0; off < len(in) && !done && err == nil; off += step {
					var n int
					n, done, err = c.Scan(in[off:min(off+step, len(in))])
					total += n
				}
				if tt.err {
					if err == nil {
						t.Fatalf("step %d: no error", step)
					}
					return
				}
				if err != nil || !done || total != len(tt.body) {
					t.Fatalf("step %d: %d bytes, done %v, error %v; want %d", step, total, done, err, len(tt.body))
				}
			}
		})
	}
}

// TestAgainstNetHTTP checks the framing against net/http's own reader on the same bytes: where
// both accept a request, they must agree on its body and on where the message ends.
func TestAgainstNetHTTP(t *testing.T) {
	for _, msg := range seeds {
		agreeWithNetHTTP(t, []byte(msg))
	}
}

func FuzzAgainstNetHTTP(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(agreeWithNetHTTP)
}

var seeds = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
	"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\n\r\n",
	"POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
	"PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\na\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\na\r\n0 \r\n\r\n",
}

func agreeWithNetHTTP(t *testing.T, msg []byte) {
	var h Head
	ok, err := ParseRequest(msg, 1<<16, &h)
	if !ok || err != nil {
		return // refused or incomplete: being stricter than net/http is allowed
	}
	r := bytes.NewReader(msg)
	br := bufio.NewReader(r)
	req, nerr := http.ReadRequest(br)
	if nerr != nil {
		// The dangerous direction: bytes net/http refuses as a request must not pass here,
		// unless the refusal is about what h1 does not judge (the target's form, Host).
		var uerr *url.Error
		if !errors.As(nerr, &uerr) && !strings.Contains(nerr.Error(), "Host") &&
			!strings.Contains(nerr.Error(), "URI") && !strings.Contains(nerr.Error(), "method") {
			t.Fatalf("h1 accepts %q, net/http refuses it: %v", msg, nerr)
		}
		return
	}
	if h.Body == Length && req.ContentLength != h.Length || h.Body == NoBody && req.ContentLength != 0 ||
		h.Body == Chunked && (len(req.TransferEncoding) != 1 || req.ContentLength != -1) {
		t.Fatalf("%q: h1 says %v/%d, net/http says length %d coding %v", msg, h.Body, h.Length, req.ContentLength, req.TransferEncoding)
	}
	_, berr := io.Copy(io.Discard, req.Body)
	sameEnd(t, msg, &h, len(msg)-br.Buffered()-r.Len(), berr)
}

// sameEnd fails t unless h1 ends the message in msg, framed by h, where net/http did: at end,
// or with berr for a body it could not read whole.
func sameEnd(t *testing.T, msg []byte, h *Head, end int, berr error) {
	t.Helper()
	var bodyEnd int
	var cerr error
	switch h.Body {
	case NoBody:
		bodyEnd = h.Size
	case Length:
		bodyEnd = h.Size + int(h.Length)
		if bodyEnd > len(msg) {
			bodyEnd = -1 // not all there: net/http reports an unexpected EOF
		}
	case UntilClose:
		bodyEnd = len(msg)
	case Chunked:
		var c Chunks
		n, done, err := c.Scan(msg[h.Size:])
		bodyEnd, cerr = h.Size+n, err
		if !done && err == nil {
			bodyEnd = -1
		}
	}
	switch {
	case cerr != nil:
		// h1 refuses a body net/http reads (bare LF in the trailers, say): stricter is allowed.
	case berr == nil && bodyEnd != end:
		t.Fatalf("%q: net/http's message ends at %d, h1's (%v) at %d", msg, end, h.Body, bodyEnd)
	case berr != nil && bodyEnd >= 0:
		t.Fatalf("%q: net/http fails the body (%v), h1 ends it at %d", msg, berr, bodyEnd)
	}
}

// BenchmarkParseRequest is the head of make bench-gateway's request: the parse an event-loop
// data plane does per request, with no allocation.
func BenchmarkParseRequest(b *testing.B) {
	msg := []byte("GET /bench/x HTTP/1.1\r\nHost: 127.0.0.1:9003\r\nAuthorization: Bearer " + strings.Repeat("x", 300) + "\r\n\r\n")
	var h Head
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := ParseRequest(msg, 16<<10, &h); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// FuzzResponseAgainstNetHTTP: the response side of the same check. An upstream's answer that
// h1 frames must be one net/http reads the same way: the event-loop engine passes bodies on
// by h1's framing, and a proxy that ends a response elsewhere than its client does lets the
// upstream write into the next answer. head: the answer is to a HEAD request.
func FuzzResponseAgainstNetHTTP(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(responseAgreesWithNetHTTP)
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nuntil the end",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nab",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframes",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz",
	"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
}

func responseAgreesWithNetHTTP(t *testing.T, msg []byte, head bool) {
	method := "GET"
	if head {
		method = "HEAD"
	}
	var h Head
	ok, err := ParseResponse(msg, 1<<16, []byte(method), &h)
	if !ok || err != nil {
		return // refused or incomplete: being stricter than net/http is allowed
	}
	r := bytes.NewReader(msg)
	br := bufio.NewReader(r)
	resp, nerr := http.ReadResponse(br, &http.Request{Method: method})
	if nerr != nil {
		t.Fatalf("h1 frames %q (%s), net/http refuses it: %v", msg, method, nerr)
	}
	if h.Status != resp.StatusCode {
		t.Fatalf("%q: h1 reads status %d, net/http %d", msg, h.Status, resp.StatusCode)
	}
	if h.Body == Tunnel {
		return // 101: what follows is the other protocol's, for neither to frame
	}
	_, berr := io.Copy(io.Discard, resp.Body)
	sameEnd(t, msg, &h, len(msg)-br.Buffered()-r.Len(), berr)
}

// TestReframe: a chunked body comes out in the coding's plainest form, whatever its sizes,
// extensions and trailers, and however its bytes are split.
func TestReframe(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"5\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n"},
		{"0005;a=b;c=\"d e\"\r\nhello\r\nA \r\n0123456789\r\n000\r\n\r\n", "5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n"},
		{"5\r\nhello\r\n0\r\nContent-Length: 9\r\nX-User-Id: admin\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n"},
		{"0\r\n\r\n", "0\r\n\r\n"},
	} {
		for _, step := range []int{1, 3, len(tt.in)} {
			var c Chunks
			var out []byte
			in := tt.in + "GET /next"
			used, done := 0, false
			for used < len(in) && !done {
				end := min(used+step, len(in))
				var n int
				var err error
				out, n, done, err = c.Reframe(out, []byte(in[used:end]))
				if err != nil {
					t.Fatalf("%q in steps of %d: %v", tt.in, step, err)
				}
				used += n
			}
			if !done || used != len(tt.in) || string(out) != tt.want {
				t.Errorf("%q in steps of %d: %q (done %v, used %d), want %q", tt.in, step, out, done, used, tt.want)
			}
		}
	}
}
