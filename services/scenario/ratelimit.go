// Package scenario replays the platform's test-plan scenarios against a running deployment
// (the local shop by default) and reports what happened.
package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
)

// RateLimitOptions configures the rate-limiting scenario.
type RateLimitOptions struct {
	Target        string  // base URL: the gateway, or an API Gateway stage URL
	TimeScale     float64 // multiplies every phase's duration (0.1 runs the plan in a tenth of the time)
	RateScale     float64 // multiplies every offered rate
	LimitRate     float64 // the limit under test, for the ideal column: requests/s
	LimitBurst    int     // and its burst
	AdminEmail    string  // to create a product with ample stock; empty uses the first product
	AdminPassword string
	Progress      io.Writer // a line per second while a phase runs; nil for none
}

// DefaultRateLimitOptions are the original plan against the local shop.
func DefaultRateLimitOptions() RateLimitOptions {
	return RateLimitOptions{Target: "http://127.0.0.1:8080", TimeScale: 1, RateScale: 1, LimitRate: 100, LimitBurst: 20,
		AdminEmail: "admin@shopmesh.local", AdminPassword: "shopmesh-admin"}
}

// Phase is one part of the plan and what it produced.
type Phase struct {
	Name     string
	Rate     float64       // offered requests/s; 0 for a burst sent at once
	Duration time.Duration // for a burst: 0
	Count    int           // requests to send

	Sent, OK, Limited, Other, Failed int
	MissingRetryAfter                int
	Elapsed                          time.Duration
}

// Accepted is what passed the rate limiter.
func (p Phase) Accepted() int { return p.Sent - p.Limited - p.Failed }

// Ideal is what a perfect limiter accepts from a full bucket: burst + ⌊rate × window⌋, or
// everything when the offered rate is below the limit.
func (p Phase) Ideal(rate float64, burst int) int {
	if p.Rate > 0 && p.Rate <= rate {
		return p.Count
	}
	window := 0.0
	if p.Rate > 0 && p.Count > 1 {
		window = float64(p.Count-1) / p.Rate
	}
	return min(p.Count, burst+int(math.Floor(rate*window)))
}

// RateLimit runs the plan: 50 req/s, then a burst, then 150 req/s for 15 s, on POST /orders
// with a valid token; open loop, so a slow answer never slows the offered rate.
func RateLimit(ctx context.Context, o RateLimitOptions) ([]Phase, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second,
	}}
	defer client.CloseIdleConnections()
	target := strings.TrimRight(o.Target, "/")
	token, err := customerToken(ctx, client, target)
	if err != nil {
		return nil, err
	}
	product, err := orderableProduct(ctx, client, target, o)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{"items": []map[string]any{{"product_id": product, "quantity": 1}}})

	scaled := func(d time.Duration) time.Duration { return time.Duration(float64(d) * o.TimeScale) }
	phases := []Phase{
		{Name: "normal", Rate: 50 * o.RateScale, Duration: scaled(10 * time.Second)},
		{Name: "burst", Count: int(math.Round(2 * float64(o.LimitBurst) * o.RateScale))},
		{Name: "overload", Rate: 150 * o.RateScale, Duration: scaled(15 * time.Second)},
	}
	refill := time.Duration(float64(o.LimitBurst)/o.LimitRate*float64(time.Second)) + 200*time.Millisecond
	for i := range phases {
		p := &phases[i]
		if p.Rate > 0 {
			p.Count = int(math.Round(p.Rate * p.Duration.Seconds()))
		}
		// Start every phase from a full bucket, as the ideal assumes.
		if err := sleep(ctx, refill); err != nil {
			return phases[:i], err
		}
		if err := run(ctx, client, target, token, body, p, o.Progress); err != nil {
			return phases[:i+1], err
		}
	}
	return phases, nil
}

// run sends p.Count requests scheduled on absolute time: request i at start + i/rate.
func run(ctx context.Context, client *http.Client, target, token string, body []byte, p *Phase, progress io.Writer) error {
	var sent, ok, limited, other, failed, missing atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	done := make(chan struct{})
	if progress != nil && p.Rate > 0 {
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					fmt.Fprintf(progress, "  %-8s %5.1fs  sent %5d  2xx %5d  429 %5d  other %d\n", p.Name,
						time.Since(start).Seconds(), sent.Load(), ok.Load(), limited.Load(), other.Load()+failed.Load())
				}
			}
		}()
	}
	for i := 0; i < p.Count; i++ {
		if p.Rate > 0 {
			if err := sleep(ctx, time.Until(start.Add(time.Duration(float64(i)/p.Rate*float64(time.Second))))); err != nil {
				break
			}
		}
		wg.Add(1)
		sent.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target+"/orders", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode >= 200 && resp.StatusCode < 300:
				ok.Add(1)
			case resp.StatusCode == http.StatusTooManyRequests:
				limited.Add(1)
				if resp.Header.Get("Retry-After") == "" {
					missing.Add(1)
				}
			default:
				other.Add(1)
			}
		}()
	}
	wg.Wait()
	close(done)
	p.Elapsed = time.Since(start)
	p.Sent, p.OK, p.Limited, p.Other, p.Failed = int(sent.Load()), int(ok.Load()), int(limited.Load()), int(other.Load()), int(failed.Load())
	p.MissingRetryAfter = int(missing.Load())
	return ctx.Err()
}

// PrintRateLimit writes the report table.
func PrintRateLimit(w io.Writer, phases []Phase, o RateLimitOptions) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "phase\toffered\tsent\t2xx\t429\tother\tachieved/s\taccepted\tideal\tdiff\t\n")
	for _, p := range phases {
		offered := fmt.Sprintf("%d at once", p.Count)
		achieved := "-"
		if p.Rate > 0 {
			offered = fmt.Sprintf("%g/s × %gs", p.Rate, p.Duration.Seconds())
			if p.Elapsed > 0 && p.Count > 1 {
				achieved = fmt.Sprintf("%.1f", float64(p.Sent-1)/p.Elapsed.Seconds())
			}
		}
		ideal := p.Ideal(o.LimitRate, o.LimitBurst)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%+d\t\n", p.Name, offered, p.Sent, p.OK, p.Limited,
			p.Other+p.Failed, achieved, p.Accepted(), ideal, p.Accepted()-ideal)
	}
	tw.Flush()
	fmt.Fprintf(w, "ideal = burst + ⌊rate × window⌋ for a limit of %g requests/s with bursts of %d; other = neither 2xx nor 429 (or no answer)\n",
		o.LimitRate, o.LimitBurst)
	for _, p := range phases {
		if p.MissingRetryAfter > 0 {
			fmt.Fprintf(w, "warning: %d of %s's 429 answers had no Retry-After header\n", p.MissingRetryAfter, p.Name)
		}
	}
}

func customerToken(ctx context.Context, client *http.Client, target string) (string, error) {
	email := "scenario-" + uuid.NewString()[:8] + "@example.com"
	creds := map[string]string{"email": email, "password": "scenario-password", "name": "Rate-limit scenario"}
	if _, err := call(ctx, client, http.MethodPost, target+"/users", "", creds, http.StatusCreated); err != nil {
		return "", fmt.Errorf("register a scenario customer at %s: %w", target, err)
	}
	return login(ctx, client, target, email, "scenario-password")
}

func login(ctx context.Context, client *http.Client, target, email, password string) (string, error) {
	out, err := call(ctx, client, http.MethodPost, target+"/users/login", "", map[string]string{"email": email, "password": password}, http.StatusOK)
	if err != nil {
		return "", fmt.Errorf("log in as %s: %w", email, err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("log in as %s: no access_token in %s", email, out)
	}
	return tok.AccessToken, nil
}

// orderableProduct creates a product with ample stock when admin credentials work, so that
// only the rate limiter refuses orders; otherwise it uses the first product listed.
func orderableProduct(ctx context.Context, client *http.Client, target string, o RateLimitOptions) (string, error) {
	var p struct {
		ID string `json:"id"`
	}
	if o.AdminEmail != "" {
		if admin, err := login(ctx, client, target, o.AdminEmail, o.AdminPassword); err == nil {
			out, err := call(ctx, client, http.MethodPost, target+"/products", admin,
				map[string]any{"name": "Scenario Widget", "price_cents": 100, "currency": "USD", "stock": 10_000_000}, http.StatusCreated)
			if err == nil && json.Unmarshal(out, &p) == nil && p.ID != "" {
				return p.ID, nil
			}
		}
	}
	out, err := call(ctx, client, http.MethodGet, target+"/products?limit=1", "", nil, http.StatusOK)
	if err != nil {
		return "", fmt.Errorf("list products: %w", err)
	}
	var page struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(out, &page); err != nil || len(page.Items) == 0 {
		return "", errors.New("the catalog is empty: nothing to order")
	}
	return page.Items[0].ID, nil
}

func call(ctx context.Context, client *http.Client, method, url, token string, body any, want int) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, bytes.TrimSpace(out))
	}
	return out, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
