package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

func newTestInline(timeout time.Duration) *inlineTransport {
	d := &net.Dialer{Timeout: time.Second}
	return newInlineTransport(&http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 8, ResponseHeaderTimeout: timeout})
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

func TestInlineTransportReusesConnections(t *testing.T) {
	s, conns, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newTestInline(time.Second)
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

func TestInlineTransportReplacesConnectionsClosedWhileIdle(t *testing.T) {
	s, conns, reqs := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newTestInline(time.Second)
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

func TestInlineTransportSendsBodiesThroughTheStandardTransport(t *testing.T) {
	s, _, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	tr := newTestInline(time.Second)
	if got, err := roundTrip(t, tr, context.Background(), "POST", s.URL, `{"a":1}`); err != nil || got != `{"a":1}` {
		t.Fatalf("POST = %q, %v", got, err)
	}
	tr.mu.Lock()
	pooled := len(tr.idle)
	tr.mu.Unlock()
	if pooled != 0 {
		t.Error("a POST went through the inline path, which must not replay it")
	}
}

func TestInlineTransportTimeoutsAndCancellation(t *testing.T) {
	s, _, reqs := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	tr := newTestInline(100 * time.Millisecond)
	_, err := roundTrip(t, tr, context.Background(), "GET", s.URL, "")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("slow upstream: %v, want a timeout", err)
	}
	if n := reqs.Load(); n != 1 {
		t.Errorf("a timed-out GET was sent %d times, want once", n)
	}

	tr = newTestInline(0)
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
