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

func TestInterleavedTakesTurns(t *testing.T) {
	var fastHits, slowHits atomic.Int32
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fastHits.Add(1) }))
	defer fast.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		w.WriteHeader(http.StatusTeapot)
		time.Sleep(20 * time.Millisecond)
	}))
	defer slow.Close()
	// 200/s for 1 s in 100 ms turns: five turns each, 20 requests a turn.
	reps := Interleaved(context.Background(), []string{fast.URL, slow.URL}, http.Header{}, 200, time.Second, 100*time.Millisecond)
	if len(reps) != 2 {
		t.Fatalf("%d reports, want 2", len(reps))
	}
	f, s := reps[0], reps[1]
	if f.Sent != 100 || s.Sent != 100 || fastHits.Load() != 100 || slowHits.Load() != 100 {
		t.Errorf("sent %d/%d, served %d/%d: want 100 to each", f.Sent, s.Sent, fastHits.Load(), slowHits.Load())
	}
	if f.Non2xx != 0 || s.Non2xx != 100 || f.Errors+s.Errors != 0 {
		t.Errorf("reports %+v and %+v: each target's answers must be counted as its own", f, s)
	}
	if s.P50 < 20*time.Millisecond || f.P50 >= 20*time.Millisecond {
		t.Errorf("p50 fast %v, slow %v: each target's latency must be its own", f.P50, s.P50)
	}
}
