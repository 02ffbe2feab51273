package gateway

import (
	"strings"
	"testing"
)

// FuzzParseTable: any route file either is refused with an error or gives a table whose every
// route has a name, a prefix and upstreams with parsed targets, and that matches any request
// without a panic.
func FuzzParseTable(f *testing.F) {
	f.Add([]byte(`
rate_limits:
  orders-create: {rate: 100, burst: 20}
  login: {rate: 1, burst: 10, by: address}
routes:
  - name: orders-create
    prefix: /orders
    methods: [POST]
    auth: required
    rate_limit: orders-create
    upstreams:
      - {url: "http://orders:80", weight: 90}
      - {url: "https://orders-canary:8443", weight: 10, identity: orders}
    rewrite_prefix: /orders
    request_headers: {add: {X-From: gateway}, remove: [X-Debug]}
    response_headers: {remove: [Server]}
`))
	for _, s := range []string{"", "routes: []", "routes:\n  - {name: a, prefix: /a, upstreams: [{url: http://x}]}\n",
		"routes:\n  - {name: a, prefix: a, upstreams: [{url: http://x}]}\n", "rate_limits: {x: {rate: 0, burst: 0}}\nroutes: []",
		"routes:\n  - {name: a, prefix: /a, upstreams: [{url: http://x, weight: -1}]}\n", "routes:\n  - [1, 2]\n", "{{{", "routes: {a: b}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		table, err := ParseTable(data)
		if err != nil {
			return
		}
		for _, r := range table.Routes {
			if r.Name == "" || !strings.HasPrefix(r.Prefix, "/") || len(r.Upstreams) == 0 {
				t.Fatalf("accepted route %+v", r)
			}
			for _, u := range r.Upstreams {
				if u.target == nil || u.Weight < 0 {
					t.Fatalf("accepted upstream %+v of route %q", u, r.Name)
				}
			}
		}
		for _, path := range []string{"/", "/orders", "/orders/1", "//", "/ä", string(data)} {
			table.Match("POST", path)
			table.Match("GET", path)
		}
	})
}
