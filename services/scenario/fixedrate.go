package scenario

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// LatencyReport is what a fixed-rate run measured.
type LatencyReport struct {
	Sent, Errors, Non2xx int
	P50, P99, Max        time.Duration
}

// FixedRate sends GET url at rate requests/s for d, open loop, and reports latency
// percentiles: unlike a closed-loop tool, a slow answer does not lower the offered load.
func FixedRate(ctx context.Context, url string, header http.Header, rate float64, d time.Duration) LatencyReport {
	return Interleaved(ctx, []string{url}, header, rate, d, d)[0]
}

// Interleaved is FixedRate over several URLs taking turns: urls[0] for block, then urls[1],
// and so on around, for d in all, at rate requests/s whichever URL's turn it is. Comparing
// targets measured one after another also compares whatever else the machine was doing
// meanwhile; taking turns every block gives each target the same share of that.
// Each URL has its own connections. The reports are in the order of urls.
func Interleaved(ctx context.Context, urls []string, header http.Header, rate float64, d, block time.Duration) []LatencyReport {
	type target struct {
		client *http.Client
		lat    []time.Duration
		rep    LatencyReport
	}
	if block <= 0 {
		block = d
	}
	targets := make([]*target, len(urls))
	for i := range targets {
		targets[i] = &target{client: &http.Client{Timeout: 5 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 1024}}}
		defer targets[i].client.CloseIdleConnections()
	}
	n := int(rate * d.Seconds())
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		at := time.Duration(float64(i) / rate * float64(time.Second))
		if sleep(ctx, time.Until(start.Add(at))) != nil {
			break
		}
		k := int(at/block) % len(urls)
		t := targets[k]
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, urls[k], nil)
			req.Header = header.Clone()
			t0 := time.Now()
			resp, err := t.client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			t.lat = append(t.lat, took)
			t.rep.Sent++
			switch {
			case err != nil:
				t.rep.Errors++
			case resp.StatusCode/100 != 2:
				t.rep.Non2xx++
			}
		}()
	}
	wg.Wait()
	reps := make([]LatencyReport, len(targets))
	for i, t := range targets {
		slices.Sort(t.lat)
		if len(t.lat) > 0 {
			t.rep.P50, t.rep.P99, t.rep.Max = t.lat[len(t.lat)/2], t.lat[len(t.lat)*99/100], t.lat[len(t.lat)-1]
		}
		reps[i] = t.rep
	}
	return reps
}
