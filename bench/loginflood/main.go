// Command loginflood sends N concurrent wrong-password logins and prints the answers by
// status, the wall time and, given the users service's pid, its peak resident memory (used by
// make bench-login).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loginflood:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loginflood", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("url", "", "login URL, e.g. http://127.0.0.1:8081/users/login")
	n := fs.Int("n", 100, "concurrent logins, each with its own email")
	pid := fs.Int("pid", 0, "pid of the users service, to report its peak resident memory")
	label := fs.String("label", "", "first column of the output line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *n < 1 {
		return errors.New("usage: loginflood --url URL [--n 100] [--pid PID] [--label TEXT]")
	}
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: *n, MaxConnsPerHost: *n}}
	statuses := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf(`{"email":"flood-%d@example.com","password":"not-the-password"}`, i)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			status := "error"
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = fmt.Sprint(resp.StatusCode)
			}
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, statuses[k])
	}
	peak := "-"
	if *pid > 0 {
		kib, err := peakRSS(*pid)
		if err != nil {
			return err
		}
		peak = fmt.Sprintf("%d MiB", kib/1024)
	}
	fmt.Fprintf(stdout, "%-34s %5d %8.1fs %10s   %s\n", *label, *n, elapsed.Seconds(), peak, strings.Join(parts, " "))
	return nil
}

// peakRSS reads VmHWM, the process's peak resident set size, in KiB.
func peakRSS(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak memory: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib); err != nil {
				return 0, fmt.Errorf("peak memory: %q: %w", line, err)
			}
			return kib, nil
		}
	}
	return 0, errors.New("peak memory: no VmHWM in /proc status")
}
