// Command load measures latency at a fixed request rate, open loop (used by make bench-gateway).
// With several --target flags the targets take turns, --turn at a time, through one run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/shopmesh/shopmesh/services/scenario"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("url", "", "URL to GET")
	var targets headerFlags
	fs.Var(&targets, "target", "name=URL: one of several targets taking turns (repeatable; instead of --url)")
	turn := fs.Duration("turn", 100*time.Millisecond, "with --target: how long each target's turn lasts")
	rate := fs.Float64("rate", 2000, "requests per second, open loop")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	var headers headerFlags
	fs.Var(&headers, "header", "a request header 'Name: value' (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*url == "") == (len(targets) == 0) || *rate <= 0 || *duration <= 0 || *turn <= 0 {
		return errors.New("usage: load (--url URL | --target name=URL ...) [--rate 2000] [--duration 10s] [--turn 100ms] [--header 'Name: value']")
	}
	var names, urls []string
	for _, t := range targets {
		name, u, ok := strings.Cut(t, "=")
		if !ok || name == "" || u == "" {
			return fmt.Errorf("--target %q: want name=URL", t)
		}
		names, urls = append(names, name), append(urls, u)
	}
	h := http.Header{}
	for _, kv := range headers {
		k, v, _ := strings.Cut(kv, ":")
		h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if *url != "" {
		r := scenario.FixedRate(ctx, *url, h, *rate, *duration)
		fmt.Fprintf(stdout, "sent %d at %g/s: p50 %dus p99 %dus max %dus errors %d non-2xx %d\n",
			r.Sent, *rate, r.P50.Microseconds(), r.P99.Microseconds(), r.Max.Microseconds(), r.Errors, r.Non2xx)
		if r.Errors > 0 {
			return fmt.Errorf("%d requests failed", r.Errors)
		}
		return nil
	}
	failed := 0
	for i, r := range scenario.Interleaved(ctx, urls, h, *rate, *duration, *turn) {
		fmt.Fprintf(stdout, "%s sent %d at %g/s: p50 %dus p99 %dus max %dus errors %d non-2xx %d\n",
			names[i], r.Sent, *rate, r.P50.Microseconds(), r.P99.Microseconds(), r.Max.Microseconds(), r.Errors, r.Non2xx)
		failed += r.Errors
	}
	if failed > 0 {
		return fmt.Errorf("%d requests failed", failed)
	}
	return nil
}

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }
