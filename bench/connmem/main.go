// Command connmem measures a proxy's memory per idle keep-alive connection and per in-flight
// request (used by make bench-gateway): it reads the process's resident set, opens n idle
// keep-alive connections (each after one request), reads it again, then holds n requests in
// flight against an upstream it runs itself that answers only when released, and reads it a
// third time.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "connmem:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("connmem", flag.ContinueOnError)
	proxy := fs.String("proxy", "", "host:port of the proxy")
	pid := fs.Int("pid", 0, "the proxy's pid")
	idlePath := fs.String("idle-path", "/bench/x", "path of a quick request, for idle connections")
	holdPath := fs.String("hold-path", "/hold/x", "path the proxy routes to -hold-addr")
	holdAddr := fs.String("hold-addr", "127.0.0.1:9008", "where this tool serves the upstream that holds requests")
	header := fs.String("header", "", "a request header 'Name: value'")
	n := fs.Int("n", 1000, "connections")
	label := fs.String("label", "", "first column")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *proxy == "" || *pid == 0 {
		return errors.New("usage: connmem --proxy host:port --pid PID [--n 1000]")
	}
	release := make(chan struct{})
	var arrived sync.WaitGroup
	arrived.Add(*n)
	ln, err := net.Listen("tcp", *holdAddr)
	if err != nil {
		return err
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release
		io.WriteString(w, "ok")
	}))

	base, err := rss(*pid)
	if err != nil {
		return err
	}
	req := func(path string) string {
		h := ""
		if *header != "" {
			h = *header + "\r\n"
		}
		return "GET " + path + " HTTP/1.1\r\nHost: bench\r\n" + h + "\r\n"
	}
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range *n {
		c, err := net.Dial("tcp", *proxy)
		if err != nil {
			return err
		}
		idle = append(idle, c)
		if _, err := io.WriteString(c, req(*idlePath)); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(time.Second)
	withIdle, err := rss(*pid)
	if err != nil {
		return err
	}
	var held []net.Conn
	for range *n {
		c, err := net.Dial("tcp", *proxy)
		if err != nil {
			return err
		}
		held = append(held, c)
		if _, err := io.WriteString(c, req(*holdPath)); err != nil {
			return err
		}
	}
	waited := make(chan struct{})
	go func() { arrived.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		return errors.New("the held requests did not all reach the upstream in 30 s")
	}
	time.Sleep(time.Second)
	withHeld, err := rss(*pid)
	close(release)
	for _, c := range held {
		c.Close()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-10s %d idle keep-alive connections: %.1f KiB each; %d requests in flight: %.1f KiB each\n", *label,
		*n, float64(withIdle-base)/float64(*n), *n, float64(withHeld-withIdle)/float64(*n))
	return nil
}

// rss is the process's resident set in KiB.
func rss(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib)
			return kib, err
		}
	}
	return 0, errors.New("no VmRSS")
}
