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
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 1024}}
	defer client.CloseIdleConnections()
	n := int(rate * d.Seconds())
	lat := make([]time.Duration, n)
	var mu sync.Mutex
	var rep LatencyReport
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		if sleep(ctx, time.Until(start.Add(time.Duration(float64(i)/rate*float64(time.Second))))) != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header = header.Clone()
			t0 := time.Now()
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			lat[i] = time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			rep.Sent++
			switch {
			case err != nil:
				rep.Errors++
			case resp.StatusCode/100 != 2:
				rep.Non2xx++
			}
		}(i)
	}
	wg.Wait()
	lat = lat[:rep.Sent]
	slices.Sort(lat)
	if len(lat) > 0 {
		rep.P50, rep.P99, rep.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return rep
}
