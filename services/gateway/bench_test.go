package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkGatewayProxy measures the full path: JWT check (cached), rate-limit token,
// proxying to a trivial upstream, all on loopback. Profile with
// go test -run '^$' -bench GatewayProxy -cpuprofile cpu.out ./services/gateway
func BenchmarkGatewayProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer up.Close()
	t := &testing.T{}
	f := startGateway(t, fmt.Sprintf("rate_limits:\n  high: {rate: 1000000000, burst: 1000000000}\nroutes:\n  - {name: b, prefix: /b, auth: required, rate_limit: high, upstreams: [{url: %s}]}\n", up.URL),
		map[string]string{"LOG_LEVEL": "warn"})
	token := f.issuer.Token(t, "bench-user")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, f.url+"/b/x", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
