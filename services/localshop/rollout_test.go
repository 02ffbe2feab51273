package localshop

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/gateway"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth/jwtauthtest"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
	"github.com/shopmesh/shopmesh/services/users"
)

// serviceModel stands in for a Kubernetes Service as kube-proxy runs it: each new TCP connection
// goes to one of the backends whose readiness probe passed last time (probed every period, as
// the kubelet does); a connection already open stays with its backend until either side closes.
type serviceModel struct {
	ln       net.Listener
	backends []string
	ready    []atomic.Bool
	next     atomic.Uint32
	probe    time.Duration
}

func startServiceModel(t *testing.T, backends ...string) *serviceModel {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &serviceModel{ln: ln, backends: backends, ready: make([]atomic.Bool, len(backends)), probe: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.probeLoop(ctx) }()
	go func() { defer wg.Done(); s.acceptLoop() }()
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	return s
}

func (s *serviceModel) URL() string { return "http://" + s.ln.Addr().String() }

func (s *serviceModel) probeLoop(ctx context.Context) {
	client := &http.Client{Timeout: s.probe}
	for {
		for i, b := range s.backends {
			resp, err := client.Get("http://" + b + "/readyz")
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				resp.Body.Close()
			}
			s.ready[i].Store(ok)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.probe):
		}
	}
}

func (s *serviceModel) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.forward(c)
	}
}

// forward pipes c to a ready backend; with none ready, the connection is refused by closing it.
func (s *serviceModel) forward(c net.Conn) {
	defer c.Close()
	n := len(s.backends)
	start := int(s.next.Add(1))
	for i := range n {
		k := (start + i) % n
		if !s.ready[k].Load() {
			continue
		}
		b, err := net.Dial("tcp", s.backends[k])
		if err != nil {
			continue
		}
		defer b.Close()
		done := make(chan struct{}, 2)
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite() // pass the half-close on, as a NAT'd connection would
			}
			done <- struct{}{}
		}
		go pipe(b, c)
		go pipe(c, b)
		<-done
		<-done
		return
	}
}

func (s *serviceModel) waitReady(t *testing.T, i int, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.ready[i].Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("backend %s never became ready=%v", s.backends[i], want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// instance is one replica of the users service, run as its main does: SIGTERM cancels Run's
// context (cmd/users/main.go), so cancel is what the kubelet's SIGTERM does.
type instance struct {
	cancel context.CancelFunc
	done   chan error
}

func startUsers(t *testing.T, addr string) *instance {
	t.Helper()
	env := map[string]string{"HTTP_ADDR": addr, "SHUTDOWN_DRAIN": "1s", "SHUTDOWN_TIMEOUT": "5s", "LOG_LEVEL": "error"}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{cancel: cancel, done: make(chan error, 1)}
	go func() {
		in.done <- users.Run(ctx, []string{"users"}, func(k string) string { return env[k] }, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		<-in.done
	})
	return in
}

// terminate sends the instance its SIGTERM and waits for it to exit.
func (in *instance) terminate(t *testing.T) {
	t.Helper()
	in.cancel()
	if err := <-in.done; err != nil {
		t.Errorf("instance exited with %v", err)
	}
	in.done <- nil // for the cleanup
}

// TestRollingRestartDropsNothing does what a rolling update does, twice — start the new replica,
// wait until it is ready, SIGTERM the old one — under steady load through the gateway, with
// idempotent GETs and non-idempotent POSTs (which no rule may retry), and counts failures.
func TestRollingRestartDropsNothing(t *testing.T) {
	addrs := []string{webtest.FreeAddr(t), webtest.FreeAddr(t)}
	svc := startServiceModel(t, addrs...)
	old := startUsers(t, addrs[0])
	svc.waitReady(t, 0, true)

	iss := jwtauthtest.Start(t)
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(routes, []byte(fmt.Sprintf(`
routes:
  - {name: jwks, prefix: /.well-known/jwks.json, upstreams: [{url: %[1]s}]}
  - {name: users, prefix: /users, upstreams: [{url: %[1]s}]}
`, svc.URL())), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := webtest.Start(t, map[string]string{"JWKS_URL": iss.JWKSURL, "ROUTES_FILE": routes, "LOG_LEVEL": "error"},
		gateway.LoadConfig, gateway.NewServer)

	var sent, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	worker := func(id int, post bool) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var resp *http.Response
			var err error
			want := http.StatusOK
			if post {
				want = http.StatusCreated
				body := fmt.Sprintf(`{"email":"roll-%d-%d@example.com","password":"password1","name":"Roll"}`, id, i)
				resp, err = client.Post(gw.URL+"/users", "application/json", strings.NewReader(body))
			} else {
				resp, err = client.Get(gw.URL + "/.well-known/jwks.json")
			}
			sent.Add(1)
			status := 0
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
			}
			if err != nil || status != want {
				failed.Add(1)
				mu.Lock()
				failures = append(failures, fmt.Sprintf("post=%v status=%d err=%v", post, status, err))
				mu.Unlock()
			}
		}
	}
	for i := range 4 {
		wg.Add(1)
		go worker(i, i%2 == 1)
	}
	steady := func() { time.Sleep(300 * time.Millisecond) }

	steady()
	next := startUsers(t, addrs[1]) // the new replica
	svc.waitReady(t, 1, true)
	steady()
	old.terminate(t)
	steady()
	startUsers(t, addrs[0]) // and back again: the other direction (stopped by the test's cleanup)
	svc.waitReady(t, 0, true)
	steady()
	next.terminate(t)
	steady()
	close(stop)
	wg.Wait()

	t.Logf("two rolling restarts under load: %d requests, %d failed", sent.Load(), failed.Load())
	if sent.Load() < 100 {
		t.Errorf("only %d requests were sent: the load was not steady", sent.Load())
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during rolling restarts, want 0: %q", n, sent.Load(), failures[:min(len(failures), 10)])
	}
}
