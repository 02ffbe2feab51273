package scenario

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCuttableProxy: connections pass through until the proxy is cut; then open ones break and
// new ones are refused; after restore, the same address forwards again.
func TestCuttableProxy(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { // a line echo server
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
	p, err := startCuttableProxy(backend.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	echo := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ping" {
			t.Errorf("echoed %q", line)
		}
		return err
	}
	open, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := echo(open); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.cut()
	if err := echo(open); err == nil {
		t.Error("an open connection still works after the cut")
	}
	if c, err := net.Dial("tcp", p.addr()); err == nil {
		c.Close()
		t.Error("a new connection was accepted after the cut")
	}
	if err := p.restore(); err != nil {
		t.Fatal(err)
	}
	again, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatalf("after restore: %v", err)
	}
	defer again.Close()
	if err := echo(again); err != nil {
		t.Errorf("through the restored proxy: %v", err)
	}
}

func TestRedisHostPort(t *testing.T) {
	if hp, err := redisHostPort("redis://127.0.0.1:6379/0"); err != nil || hp != "127.0.0.1:6379" {
		t.Errorf("redisHostPort = %q, %v", hp, err)
	}
	for _, bad := range []string{"", "rediss://x:1/0", "127.0.0.1:6379"} {
		if _, err := redisHostPort(bad); err == nil {
			t.Errorf("redisHostPort(%q) accepted", bad)
		}
	}
}
