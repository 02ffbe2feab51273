package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingServer answers "ok" (or the request body) and counts connections and requests.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	var conns, reqs atomic.Int64
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns, &reqs
}

func newTestTransport(timeout time.Duration) *upstreamTransport {
	d := &net.Dialer{Timeout: time.Second}
	return newUpstreamTransport(&http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 8, ResponseHeaderTimeout: timeout})
}

func roundTrip(t *testing.T, tr http.RoundTripper, ctx context.Context, method, url, body string) (string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, url, rd)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestUpstreamTransportReusesConnections(t *testing.T) {
	s, conns, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newTestTransport(time.Second)
	for i := 0; i < 20; i++ {
		if got, err := roundTrip(t, tr, context.Background(), "GET", s.URL+"/x", ""); err != nil || got != "ok" {
			t.Fatalf("GET %d = %q, %v", i, got, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential GETs used %d connections, want 1", n)
	}
	// A body not read to its end leaves the connection in an unknown state: it is not reused.
	req, _ := http.NewRequest("GET", s.URL+"/x", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := roundTrip(t, tr, context.Background(), "GET", s.URL+"/x", ""); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("after an abandoned body: %d connections, want a second one", n)
	}
}

func TestUpstreamTransportReplacesConnectionsClosedWhileIdle(t *testing.T) {
	s, conns, reqs := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newTestTransport(time.Second)
	if _, err := roundTrip(t, tr, context.Background(), "GET", s.URL, ""); err != nil {
		t.Fatal(err)
	}
	s.CloseClientConnections() // the upstream drops its idle keep-alive connection
	time.Sleep(20 * time.Millisecond)
	if got, err := roundTrip(t, tr, context.Background(), "GET", s.URL, ""); err != nil || got != "ok" {
		t.Fatalf("GET after the upstream closed the pooled connection = %q, %v; want a fresh connection", got, err)
	}
	if conns.Load() != 2 || reqs.Load() != 2 {
		t.Errorf("connections %d, requests %d; want 2 and 2", conns.Load(), reqs.Load())
	}
}

func TestUpstreamTransportSendsBodiesAndReusesTheConnection(t *testing.T) {
	s, conns, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // net/http servers are half duplex: read, then answer
		w.Write(b)
	})
	tr := newTestTransport(time.Second)
	for i := 0; i < 10; i++ {
		body := strings.Repeat("b", i*1000)
		if got, err := roundTrip(t, tr, context.Background(), "POST", s.URL, body); err != nil || got != body {
			t.Fatalf("POST %d = %d bytes, %v; want the %d bytes sent back", i, len(got), err, len(body))
		}
	}
	// A connection goes back to the pool when its body writer is done too, which the answer's
	// end waits for: on a busy machine that goroutine may not have said so yet.
	if n := conns.Load(); n != 1 {
		t.Errorf("10 sequential POSTs used %d connections, want 1", n)
	}
}

func TestUpstreamTransportReusesTLSConnections(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	var conns atomic.Int64
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	std := s.Client().Transport.(*http.Transport).Clone()
	std.MaxIdleConnsPerHost = 8
	tr := newUpstreamTransport(std)
	for i := 0; i < 10; i++ {
		if got, err := roundTrip(t, tr, context.Background(), "GET", s.URL, ""); err != nil || got != "ok" {
			t.Fatalf("GET %d = %q, %v", i, got, err)
		}
	}
	// TLS 1.3 session tickets wait unread on an idle connection; they must not make it look closed.
	if n := conns.Load(); n != 1 {
		t.Errorf("10 sequential GETs over TLS used %d connections, want 1", n)
	}
}

// refusedOnce is a dialer whose first refused dials fail as a closed port does.
func refusedDialer(refused int64, dials *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) <= refused {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

func TestUpstreamTransportRetriesARefusedDialOnce(t *testing.T) {
	s, _, reqs := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	for _, method := range []string{"GET", "POST"} {
		var dials atomic.Int64
		tr := newTestTransport(time.Second)
		tr.dial = refusedDialer(1, &dials)
		reqs.Store(0)
		body := ""
		if method == "POST" {
			body = `{"a":1}` // never read before the dial: it can be sent on the second one
		}
		if got, err := roundTrip(t, tr, context.Background(), method, s.URL, body); err != nil || got != body {
			t.Fatalf("%s after one refused dial = %q, %v; want it retried", method, got, err)
		}
		if dials.Load() != 2 || reqs.Load() != 1 {
			t.Errorf("%s: %d dials, %d requests; want 2 and 1", method, dials.Load(), reqs.Load())
		}

		dials.Store(0)
		tr = newTestTransport(time.Second)
		tr.dial = refusedDialer(2, &dials)
		if _, err := roundTrip(t, tr, context.Background(), method, s.URL, body); err == nil {
			t.Errorf("%s with two refused dials succeeded; want one retry only", method)
		}
		if dials.Load() != 2 {
			t.Errorf("%s: %d dials, want 2 (one retry)", method, dials.Load())
		}
	}
}

func TestRetryBudgetBoundsRetriesToAFractionOfRequests(t *testing.T) {
	var dials atomic.Int64
	tr := newTestTransport(time.Second)
	tr.dial = refusedDialer(1<<40, &dials)
	clock := time.Unix(1_700_000_000, 0)
	tr.now = func() time.Time { return clock }
	outcomes := map[string]int{}
	tr.onRetry = func(_, outcome string) { outcomes[outcome]++ }
	const requests = 500
	for i := 0; i < requests; i++ {
		clock = clock.Add(10 * time.Millisecond) // 100 requests/s for 5 s
		if _, err := roundTrip(t, tr, context.Background(), "GET", "http://127.0.0.1:1/x", ""); err == nil {
			t.Fatal("a refused dial succeeded")
		}
	}
	retries := dials.Load() - requests
	// saved-up budget + 10 % of the requests + 1/s over 5 s
	limit := int64(retryBudgetMax + retryRatio*requests + retryMinPerSecond*5)
	if retries < 1 || retries > limit {
		t.Errorf("%d requests to a dead upstream made %d retries, want between 1 and %d", requests, retries, limit)
	}
	if int64(outcomes["retried"]) != retries || outcomes["budget_exhausted"] != requests-int(retries) {
		t.Errorf("retry outcomes %v, want %d retried and %d budget_exhausted", outcomes, retries, requests-int(retries))
	}
	t.Logf("%d requests, %d dials: retries were %.1f%% of requests", requests, dials.Load(), 100*float64(retries)/requests)
}

func TestUpstreamTransportTimeoutsAndCancellation(t *testing.T) {
	s, _, reqs := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	tr := newTestTransport(100 * time.Millisecond)
	_, err := roundTrip(t, tr, context.Background(), "GET", s.URL, "")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("slow upstream: %v, want a timeout", err)
	}
	if n := reqs.Load(); n != 1 {
		t.Errorf("a timed-out GET was sent %d times, want once", n)
	}

	tr = newTestTransport(0)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := roundTrip(t, tr, ctx, "GET", s.URL, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancellation took %v", d)
	}
}
