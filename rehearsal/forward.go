package rehearsal

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// forwarder is a layer-4 hop: it accepts connections and joins each to a connection it opens,
// from an address of its own, to one of its targets, in turn. It stands for a kube-proxy
// Service, an NLB (which with client IP preservation off connects from its own address: ELB
// guide, "Client IP preservation") and Istio's sidecar (which connects to the application from
// 127.0.0.6: istio/istio, pilot/pkg/networking/util, InboundPassthroughBindIpv4).
type forwarder struct {
	name string
	ln   net.Listener
	from net.IP // the source address of the connections it opens

	mu      sync.Mutex
	targets []string // the addresses new connections go to
	next    atomic.Uint64
	conns   sync.WaitGroup
}

func newForwarder(name, listen string, from net.IP) (*forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	f := &forwarder{name: name, ln: ln, from: from}
	go f.serve()
	return f, nil
}

func (f *forwarder) Addr() string { return f.ln.Addr().String() }

// Register adds a target: new connections may go to it.
func (f *forwarder) Register(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.targets {
		if t == addr {
			return
		}
	}
	f.targets = append(f.targets, addr)
}

// Deregister removes a target: no new connection goes to it; those open stay open.
func (f *forwarder) Deregister(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, t := range f.targets {
		if t == addr {
			f.targets = append(f.targets[:i], f.targets[i+1:]...)
			return
		}
	}
}

func (f *forwarder) pick() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.targets) == 0 {
		return ""
	}
	return f.targets[f.next.Add(1)%uint64(len(f.targets))]
}

func (f *forwarder) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.conns.Add(1)
		go func() {
			defer f.conns.Done()
			f.join(c)
		}()
	}
}

func (f *forwarder) join(c net.Conn) {
	defer c.Close()
	target := f.pick()
	if target == "" {
		return // no target: the connection is reset, as an NLB without healthy targets does
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: f.from}}
	up, err := d.DialContext(context.Background(), "tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite() // pass a half-close on, as a TCP proxy does
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

func (f *forwarder) Close() error {
	err := f.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
