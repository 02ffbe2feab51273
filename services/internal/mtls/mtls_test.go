package mtls_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
	"github.com/shopmesh/shopmesh/services/internal/mtls"
	"github.com/shopmesh/shopmesh/services/pki"
)

func TestReadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string // substrings of the error; none means valid
		check   func(t *testing.T, c mtls.Config)
	}{
		{name: "off by default", env: map[string]string{}, check: func(t *testing.T, c mtls.Config) {
			if c.Enabled() || c.HealthAddr != ":9000" || strings.Join(c.Allowed, ",") != "gateway,orders" {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "mtls with files", env: map[string]string{"TLS_MODE": "mtls", "TLS_CERT_FILE": "c", "TLS_KEY_FILE": "k", "TLS_CA_FILE": "ca",
			"TLS_ALLOWED_CALLERS": "gateway, spiffe://shopmesh/ns/edge/sa/ingress", "HEALTH_ADDR": "127.0.0.1:1"},
			check: func(t *testing.T, c mtls.Config) {
				if !c.Enabled() || c.HealthAddr != "127.0.0.1:1" || len(c.Allowed) != 2 || c.Allowed[1] != "spiffe://shopmesh/ns/edge/sa/ingress" {
					t.Errorf("got %+v", c)
				}
			}},
		{name: "unknown mode", env: map[string]string{"TLS_MODE": "tls"}, wantErr: []string{"TLS_MODE", `got "tls"`}},
		{name: "mtls without files", env: map[string]string{"TLS_MODE": "mtls"}, wantErr: []string{"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"}},
		{name: "bad caller", env: map[string]string{"TLS_ALLOWED_CALLERS": "Gateway_1"}, wantErr: []string{"TLS_ALLOWED_CALLERS", "Gateway_1"}},
		{name: "foreign trust domain", env: map[string]string{"TLS_ALLOWED_CALLERS": "spiffe://example.org/ns/a/sa/b"}, wantErr: []string{"TLS_ALLOWED_CALLERS"}},
		{name: "plain URL under mtls", env: map[string]string{"TLS_MODE": "mtls", "TLS_CERT_FILE": "c", "TLS_KEY_FILE": "k", "TLS_CA_FILE": "ca", "PEER_URL": "http://products"},
			wantErr: []string{"PEER_URL", "https://"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := envconf.New(func(k string) string { return tt.env[k] })
			c := mtls.ReadConfig(r, []string{"gateway", "orders"}, ":9000")
			if u := tt.env["PEER_URL"]; u != "" {
				c.CheckURL(r, "PEER_URL", u)
			}
			err := r.Err()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("no error, want one naming %v", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

type fixture struct {
	dir    string
	ca     *pki.CA
	caFile string
}

func newFixture(t *testing.T) fixture {
	dir := t.TempDir()
	ca, err := pki.InitCA(dir, 24*time.Hour, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return fixture{dir, ca, filepath.Join(dir, pki.CACertFile)}
}

func (f fixture) material(t *testing.T, svc string) *mtls.Material {
	t.Helper()
	out, err := f.ca.Issue(t.TempDir(), pki.ID{Namespace: "shop", Service: svc}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m, stop, err := mtls.Start(mtls.Config{Mode: mtls.ModeMTLS, CertFile: out.CertPath, KeyFile: out.KeyPath, CAFile: f.caFile},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return m
}

// serve answers with the caller's identity over mutual TLS as svc.
func (f fixture) serve(t *testing.T, svc string) *httptest.Server {
	m := f.material(t, svc)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := pki.IDFromCert(r.TLS.PeerCertificates[0])
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		_, _ = io.WriteString(w, id.Service)
	}))
	s.TLS = m.ServerConfig()
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func fetch(t *testing.T, rt http.RoundTripper, url string) (string, error) {
	t.Helper()
	client := &http.Client{Transport: rt, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), nil
}

func TestTransport(t *testing.T) {
	f := newFixture(t)
	products := f.serve(t, "products")
	orders := f.material(t, "orders")
	base := &http.Transport{MaxIdleConnsPerHost: 7}

	tr, err := orders.Transport(base, "products")
	if err != nil {
		t.Fatal(err)
	}
	if tr == base || tr.MaxIdleConnsPerHost != 7 || tr.TLSClientConfig == base.TLSClientConfig {
		t.Error("Transport must return a configured copy and leave base alone")
	}
	if got, err := fetch(t, tr, products.URL); err != nil || got != "orders" {
		t.Errorf("orders → products = %q, %v; want the server to see orders", got, err)
	}
	wrong, _ := orders.Transport(base, "users")
	if _, err := fetch(t, wrong, products.URL); err == nil || !strings.Contains(err.Error(), "want spiffe://shopmesh/ns/shop/sa/users") {
		t.Errorf("expecting users but reaching products: %v, want an identity mismatch", err)
	}
	var off *mtls.Material
	if same, err := off.Transport(base, "products"); err != nil || same != base {
		t.Error("with TLS off, Transport must return base unchanged")
	}
	if _, err := orders.Transport(base, "Not A Name"); err == nil {
		t.Error("an invalid peer name must be an error")
	}
}

func TestDialTLSPerUpstream(t *testing.T) {
	f := newFixture(t)
	users, products := f.serve(t, "users"), f.serve(t, "products")
	gateway := f.material(t, "gateway")
	peer := func(s string) pki.ID { return pki.ID{Namespace: "shop", Service: s} }
	addr := func(s *httptest.Server) string { return s.Listener.Addr().String() }
	tr := &http.Transport{DialTLSContext: gateway.DialTLS(map[string]pki.ID{
		addr(users): peer("users"), addr(products): peer("products"),
	}, &net.Dialer{Timeout: time.Second})}
	for _, s := range []*httptest.Server{users, products} {
		if got, err := fetch(t, tr, s.URL); err != nil || got != "gateway" {
			t.Errorf("gateway → %s = %q, %v", s.URL, got, err)
		}
	}
	swapped := &http.Transport{DialTLSContext: gateway.DialTLS(map[string]pki.ID{addr(users): peer("products")}, &net.Dialer{})}
	if _, err := fetch(t, swapped, users.URL); err == nil {
		t.Error("an upstream presenting another identity than its route names must be refused")
	}
	if _, err := fetch(t, swapped, products.URL); err == nil || !strings.Contains(err.Error(), "no workload identity") {
		t.Errorf("an upstream without an identity: %v", err)
	}
}
