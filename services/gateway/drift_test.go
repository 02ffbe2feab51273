package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEnginesAgree sends the same raw requests to both engines and wants, for each, the same
// status, the same request at the upstream (method, target and every field but a request id
// the gateway made up), and the same request log line (fields but time and latency). The
// engines share the rules by design; this is what keeps them from drifting apart.
func TestEnginesAgree(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // tag → the upstream's view of the request
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := r.Header.Clone()
		if id := h.Get("X-Request-Id"); len(id) == 32 && !strings.HasPrefix(id, "client-") {
			h.Set("X-Request-Id", "<made by the gateway>")
		}
		var fields []string
		for k, v := range h {
			fields = append(fields, k+": "+strings.Join(v, " | "))
		}
		sortStrings(fields)
		mu.Lock()
		seen[driftTag(r.URL.Path)] = r.Method + " " + r.RequestURI + "\n" + strings.Join(fields, "\n")
		mu.Unlock()
		w.Header().Set("Content-Length", "2")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	routes := fmt.Sprintf(`
routes:
  - {name: pub, prefix: /pub, upstreams: [{url: %[1]s}]}
  - {name: ws, prefix: /ws, upgrades: [websocket], upstreams: [{url: %[1]s}]}
`, up.URL)
	long := strings.Repeat("a", 128)
	cases := []struct{ name, raw string }{
		{"plain", "GET /pub/d1/a HTTP/1.1\r\nHost: shop.example\r\n\r\n"},
		{"request id kept", "GET /pub/d2/a HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-1\r\n\r\n"},
		{"request id of 128 bytes", "GET /pub/d3/a HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-" + long[7:] + "\r\n\r\n"},
		{"request id over 128 bytes", "GET /pub/d4/a HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-" + long + "\r\n\r\n"},
		{"forged identity", "GET /pub/d5/a HTTP/1.1\r\nHost: x\r\nX-User-Id: admin\r\nX_User_Roles: admin\r\n\r\n"},
		{"forwarded chain", "GET /pub/d6/a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n\r\n"},
		{"forwarded chain in two fields", "GET /pub/d14/a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.8\r\n\r\n"},
		{"a forwarded address that is no address", "GET /pub/d15/a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: unknown\r\n\r\n"},
		{"forged forwarding", "GET /pub/d7/a HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n\r\n"},
		{"absolute form", "GET http://other.example/pub/d8/a HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"percent-encoded", "GET /p%75b/d9/a%20b?q=%2F HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"upgrade with a body", "POST /ws/d10/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello"},
		{"HTTP/1.0", "GET /pub/d11/a HTTP/1.0\r\n\r\n"},
		{"a body", "POST /pub/d12/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"},
		{"chunked", "POST /pub/d13/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;x=1\r\n{}\r\n0\r\nT: 1\r\n\r\n"},
	}
	type view struct{ status, upstream, log string }
	views := map[string]map[string]view{}
	for _, engine := range suiteEngines {
		t.Run(engine, func(t *testing.T) {
			logs := captureLogs(t)
			f := startGateway(t, routes, map[string]string{"GATEWAY_ENGINE": engine, "TRUSTED_PROXIES": "127.0.0.0/8"})
			addr := strings.TrimPrefix(f.url, "http://")
			views[engine] = map[string]view{}
			for _, c := range cases {
				conn, br := dialRaw(t, addr)
				send(t, conn, c.raw)
				resp, err := http.ReadResponse(bufio.NewReader(br), nil)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				conn.Close()
				tag := driftTag(strings.Fields(c.raw)[1])
				mu.Lock()
				upstream := seen[tag]
				mu.Unlock()
				views[engine][c.name] = view{status: resp.Status, upstream: upstream, log: requestLogLine(t, logs, tag)}
			}
		})
	}
	if len(suiteEngines) < 2 {
		return
	}
	a, b := suiteEngines[0], suiteEngines[1]
	for _, c := range cases {
		va, vb := views[a][c.name], views[b][c.name]
		if va.status != vb.status {
			t.Errorf("%s: %s answers %q, %s %q", c.name, a, va.status, b, vb.status)
		}
		if va.upstream != vb.upstream {
			t.Errorf("%s: the upstream saw from %s\n%s\nand from %s\n%s", c.name, a, va.upstream, b, vb.upstream)
		}
		if va.log != vb.log {
			t.Errorf("%s: %s logs\n%s\nand %s\n%s", c.name, a, va.log, b, vb.log)
		}
	}
}

var driftTagIn = regexp.MustCompile(`/d[0-9]+/`)

func driftTag(path string) string { return driftTagIn.FindString(path) }

// requestLogLine is the request log line of the request tagged tag, as sorted key=value pairs
// without what differs by nature (time, latency, a made-up request id, the engine's name).
func requestLogLine(t *testing.T, logs *lockedLog, tag string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "request" || !strings.Contains(fmt.Sprint(m["path"]), strings.Trim(tag, "/")) {
				continue
			}
			var kv []string
			for k, v := range m {
				switch k {
				case "time", "latency", "engine", "loops":
					continue
				case "request_id":
					if s := fmt.Sprint(v); !strings.HasPrefix(s, "client-") {
						v = "<made by the gateway>"
					}
				}
				kv = append(kv, fmt.Sprintf("%s=%v", k, v))
			}
			sortStrings(kv)
			return strings.Join(kv, " ")
		}
		if time.Now().After(deadline) {
			return "<no request log line>"
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sortStrings(s []string) { slices.Sort(s) }
