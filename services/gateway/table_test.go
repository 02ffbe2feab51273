package gateway

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/pki"
)

func TestParseTableErrorsNameLineAndReason(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", "routes:\n  - name: a\n    prefix: /a\n    upstreams: [{url: http://x}]\n    colour: red\n", "line 5"},
		{"no upstream", "routes:\n  - name: a\n    prefix: /a\n", "line 2: route \"a\": needs at least one upstream"},
		{"bad auth", "routes:\n  - name: a\n    prefix: /a\n    auth: maybe\n    upstreams: [{url: http://x}]\n", "auth must be none, optional or required"},
		{"undefined policy", "routes:\n  - name: a\n    prefix: /a\n    rate_limit: fast\n    upstreams: [{url: http://x}]\n", `rate_limit "fast" is not defined`},
		{"bad url", "routes:\n  - name: a\n    prefix: /a\n    upstreams: [{url: 'ftp://x'}]\n", "not an http(s) URL"},
		{"bad prefix", "routes:\n  - name: a\n    prefix: a\n    upstreams: [{url: http://x}]\n", "prefix must start with /"},
		{"duplicate", "routes:\n  - name: a\n    prefix: /a\n    upstreams: [{url: http://x}]\n  - name: a\n    prefix: /b\n    upstreams: [{url: http://x}]\n", "line 5: route \"a\": name already used at line 2"},
		{"zero weights", "routes:\n  - name: a\n    prefix: /a\n    upstreams: [{url: http://x, weight: 0}, {url: http://y, weight: 0}]\n", "weights add up to 0"},
		{"bad policy", "rate_limits:\n  p: {rate: 0, burst: 1}\nroutes:\n  - name: a\n    prefix: /a\n    upstreams: [{url: http://x}]\n", "rate must be > 0"},
		{"bad method", "routes:\n  - name: a\n    prefix: /a\n    methods: [FETCH]\n    upstreams: [{url: http://x}]\n", `unknown method "FETCH"`},
		{"empty", "rate_limits: {}\n", "no routes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTable([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseTable = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := LoadTable("testdata/none.yaml"); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Errorf("LoadTable(missing) = %v, want an error naming the file", err)
	}
}

func TestMatch(t *testing.T) {
	table := DefaultTable("http://u", "http://p", "http://o", DefaultLoginLimit, DefaultSignupLimit)
	tests := []struct{ method, path, want string }{
		{"POST", "/orders", "orders-create"},
		{"GET", "/orders", "orders"},
		{"GET", "/orders/123", "orders"},
		{"POST", "/users/login", "users-login"},
		{"POST", "/users", "users-signup"},
		{"GET", "/users/me", "users"},
		{"GET", "/products?x", "products"},
		{"GET", "/.well-known/jwks.json", "jwks"},
		{"GET", "/ordersx", ""},
		{"POST", "/reservations", ""}, // internal to the cluster: never routed
		{"GET", "/", ""},
	}
	for _, tt := range tests {
		got := ""
		if r := table.Match(tt.method, strings.Split(tt.path, "?")[0]); r != nil {
			got = r.Name
		}
		if got != tt.want {
			t.Errorf("Match(%s %s) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

// TestLocalLimiterAccuracy replays the original plan at a fixed offered rate on a fake clock:
// accepted = burst + ⌊rate × window⌋, within one.
func TestLocalLimiterAccuracy(t *testing.T) {
	policy := RateLimit{Rate: 100, Burst: 20}
	tests := []struct {
		name         string
		offered      float64 // requests per second
		window       time.Duration
		wantAccepted int
		allMustPass  bool
	}{
		{"normal 50/s", 50, 10 * time.Second, 500, true},
		{"overload 150/s for 15s", 150, 15 * time.Second, 20 + 100*15, false},
		{"burst of 40 at once", 1e9, 40 * time.Nanosecond, 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := time.Unix(1_700_000_000, 0)
			l := NewLocalLimiter(func() time.Time { return clock })
			n := int(math.Round(tt.offered * tt.window.Seconds()))
			step := time.Duration(float64(time.Second) / tt.offered)
			accepted := 0
			for i := 0; i < n; i++ {
				d, err := l.Allow(context.Background(), "client", policy)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed {
					accepted++
				} else if d.RetryAfter <= 0 {
					t.Fatalf("refusal %d without a RetryAfter", i)
				}
				clock = clock.Add(step)
			}
			if tt.allMustPass && accepted != n {
				t.Errorf("accepted %d of %d below the limit", accepted, n)
			}
			if diff := accepted - tt.wantAccepted; diff < -1 || diff > 1 {
				t.Errorf("accepted %d of %d, want %d ± 1", accepted, n, tt.wantAccepted)
			}
		})
	}
}

func TestLocalLimiterKeysAreSeparate(t *testing.T) {
	clock := time.Unix(0, 0)
	l := NewLocalLimiter(func() time.Time { return clock })
	p := RateLimit{Rate: 1, Burst: 1}
	a, _ := l.Allow(context.Background(), "a", p)
	a2, _ := l.Allow(context.Background(), "a", p)
	b, _ := l.Allow(context.Background(), "b", p)
	if !a.Allowed || a2.Allowed || !b.Allowed {
		t.Errorf("a, a again, b = %v %v %v; want true false true", a.Allowed, a2.Allowed, b.Allowed)
	}
	if a2.RetryAfter != time.Second {
		t.Errorf("RetryAfter = %v, want 1s", a2.RetryAfter)
	}
}

func TestCanaryWeights(t *testing.T) {
	table, err := ParseTable([]byte("routes:\n  - name: a\n    prefix: /a\n    upstreams:\n      - {url: http://stable, weight: 90}\n      - {url: http://canary, weight: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{pick: randomPick}
	const n = 100_000
	canary := 0
	for i := 0; i < n; i++ {
		if g.choose(&table.Routes[0]).URL == "http://canary" {
			canary++
		}
	}
	// Binomial(n, 0.1): the standard deviation is ~95; allow 5 of them.
	if math.Abs(float64(canary)-0.1*n) > 5*math.Sqrt(n*0.1*0.9) {
		t.Errorf("canary got %d of %d, want about %d", canary, n, n/10)
	}
}

func TestUpstreamPeers(t *testing.T) {
	resolve := func(s string) (pki.ID, error) { return pki.ID{Namespace: "shop", Service: s}, nil }
	def := DefaultTable("https://127.0.0.1:9001", "https://products.shop", "http://orders", DefaultLoginLimit, DefaultSignupLimit)
	peers, err := def.upstreamPeers(resolve)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"127.0.0.1:9001": "users", "products.shop:443": "products"}
	if len(peers) != len(want) {
		t.Errorf("peers = %v, want %v (plain http upstreams have none)", peers, want)
	}
	for addr, svc := range want {
		if peers[addr].Service != svc {
			t.Errorf("peer of %s = %v, want %s", addr, peers[addr], svc)
		}
	}

	for name, tc := range map[string]struct{ file, want string }{
		"https upstream without identity": {"routes:\n  - name: a\n    prefix: /a\n    upstreams:\n      - url: https://a:1\n", `line 2: route "a": upstream https://a:1 needs an identity`},
		"one address, two identities": {"routes:\n  - name: a\n    prefix: /a\n    upstreams:\n      - {url: 'https://a:1', identity: a, weight: 1}\n      - {url: 'https://a:1/v2', identity: b, weight: 1}\n",
			"named both spiffe://shopmesh/ns/shop/sa/a and spiffe://shopmesh/ns/shop/sa/b"},
	} {
		table, err := ParseTable([]byte(tc.file))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := table.upstreamPeers(resolve); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
