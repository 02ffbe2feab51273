package scenario

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestFixedRateIsOpenLoop(t *testing.T) {
	var hits atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusTeapot)
		}
		time.Sleep(50 * time.Millisecond) // slower than the 5 ms between requests
	}))
	defer slow.Close()
	start := time.Now()
	r := FixedRate(context.Background(), slow.URL, http.Header{"X-Test": {"1"}}, 200, 500*time.Millisecond)
	if r.Sent != 100 || r.Errors != 0 || r.Non2xx != 50 {
		t.Errorf("report = %+v, want 100 sent, 50 non-2xx", r)
	}
	// Closed loop would need 100 × 50 ms; open loop finishes in about the window plus one answer.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v: the load waited for answers", took)
	}
	if r.P50 < 50*time.Millisecond || r.P99 < r.P50 || r.Max < r.P99 {
		t.Errorf("percentiles p50 %v p99 %v max %v", r.P50, r.P99, r.Max)
	}
}
