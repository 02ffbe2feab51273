package scenario

import (
	"bufio"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP mtls_info x
# TYPE mtls_info gauge
mtls_info{allowed="spiffe://shopmesh/ns/shop/sa/gateway,spiffe://shopmesh/ns/shop/sa/orders",identity="spiffe://shopmesh/ns/shop/sa/products"} 1
mtls_requests_total{peer="spiffe://shopmesh/ns/shop/sa/orders"} 3
mtls_requests_total{peer="spiffe://shopmesh/ns/shop/sa/gateway"} 2
tls_handshake_failures_total{reason="unknown_ca"} 1
go_goroutines 12
odd{v="a\"b,c}"} 4e+00
`
	m, err := parseMetrics(bufio.NewScanner(strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	info := m.find("mtls_info")
	if len(info) != 1 || info[0].labels["identity"] != "spiffe://shopmesh/ns/shop/sa/products" || shortIDs(info[0].labels["allowed"]) != "gateway, orders" {
		t.Errorf("mtls_info = %+v", info)
	}
	if got := m.sum("mtls_requests_total", ""); got != 5 {
		t.Errorf("sum of requests = %v, want 5", got)
	}
	if got := m.sum("tls_handshake_failures_total", `reason="unknown_ca"`); got != 1 {
		t.Errorf("unknown_ca = %v, want 1", got)
	}
	if g := m.find("go_goroutines"); len(g) != 1 || g[0].value != 12 {
		t.Errorf("unlabelled sample = %+v", g)
	}
	if o := m.find("odd"); len(o) != 1 || o[0].labels["v"] != `a"b,c}` || o[0].value != 4 {
		t.Errorf("escaped label = %+v", o)
	}
	if _, err := parseMetrics(bufio.NewScanner(strings.NewReader(`broken{a="b" 1`))); err == nil {
		t.Error("an unterminated label set must be an error")
	}
}
