package web_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/mtls"
	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
	"github.com/shopmesh/shopmesh/services/pki"
)

type workload struct{ cert, key string }

func issue(t *testing.T, ca *pki.CA, dir, svc string, notBefore time.Time, ttl time.Duration) workload {
	t.Helper()
	out, err := ca.Issue(dir, pki.ID{Namespace: "shop", Service: svc}, ttl, notBefore)
	if err != nil {
		t.Fatal(err)
	}
	return workload{out.CertPath, out.KeyPath}
}

func material(t *testing.T, w workload, caFile string) *mtls.Material {
	t.Helper()
	// Loaded, not watched: a serving server reloads its own material.
	m, err := mtls.Load(mtls.Config{Mode: mtls.ModeMTLS, CertFile: w.cert, KeyFile: w.key, CAFile: caFile}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// startMTLS serves GET /products with mutual TLS as the products workload.
func startMTLS(t *testing.T, server *mtls.Material, allowed ...string) (addr, health string) {
	t.Helper()
	cfg := web.Config{Addr: webtest.FreeAddr(t), RequestTimeout: 5 * time.Second, ShutdownTimeout: time.Second, BodyLimitBytes: 1 << 20}
	s := web.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.Echo.GET("/products", func(c echo.Context) error { return c.String(http.StatusOK, "catalog") })
	health = webtest.FreeAddr(t)
	if err := s.UseMTLS(server, allowed, health); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := 0; i < 100; i++ {
		if r, err := http.Get("http://" + health + "/healthz"); err == nil {
			r.Body.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cfg.Addr, health
}

func get(cfg *tls.Config, url string) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestMutualTLS(t *testing.T) {
	dir, otherDir := t.TempDir(), t.TempDir()
	now := time.Now()
	ca, _ := pki.InitCA(dir, 24*time.Hour, false, now.Add(-3*time.Hour))
	other, _ := pki.InitCA(otherDir, 24*time.Hour, false, now)
	caFile := filepath.Join(dir, pki.CACertFile)
	products := issue(t, ca, dir, "products", now, time.Hour)
	addr, health := startMTLS(t, material(t, products, caFile), "orders", "gateway")
	url := "https://" + addr + "/products"
	wantServer := pki.ID{Namespace: "shop", Service: "products"}

	orders := material(t, issue(t, ca, dir, "orders", now, time.Hour), caFile)
	users := material(t, issue(t, ca, dir, "users", now, time.Hour), caFile)
	// Trusts the platform CA (so it accepts the server) but holds a certificate from another CA.
	foreign := material(t, issue(t, other, otherDir, "orders", now, time.Hour), caFile)
	expiredDir := t.TempDir()
	expired := issue(t, ca, expiredDir, "orders", now.Add(-2*time.Hour), time.Hour)

	status, body, err := get(orders.ClientConfig(wantServer), url)
	if err != nil || status != 200 || body != "catalog" {
		t.Fatalf("allowed caller: %d %q %v", status, body, err)
	}
	status, body, err = get(users.ClientConfig(wantServer), url)
	if err != nil || status != 403 || !strings.Contains(body, "spiffe://shopmesh/ns/shop/sa/users is not allowed to call products") {
		t.Errorf("caller not on the list: %d %s %v; want 403 naming the identity", status, body, err)
	}

	noCert := orders.ClientConfig(wantServer)
	noCert.GetClientCertificate = nil
	expiredCfg := orders.ClientConfig(wantServer)
	expiredPair, _ := tls.LoadX509KeyPair(expired.cert, expired.key)
	expiredCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &expiredPair, nil }
	for name, cfg := range map[string]*tls.Config{
		"no client certificate":          noCert,
		"certificate of another CA":      func() *tls.Config { c := foreign.ClientConfig(wantServer); return c }(),
		"expired certificate":            expiredCfg,
		"server with the wrong identity": orders.ClientConfig(pki.ID{Namespace: "shop", Service: "users"}),
	} {
		if status, _, err := get(cfg, url); err == nil {
			t.Errorf("%s: got %d, want the handshake to fail", name, status)
		}
	}

	if status, _, err := get(nil, "http://"+health+"/healthz"); err != nil || status != 200 {
		t.Errorf("plain health probe = %d %v", status, err)
	}
	if status, metrics, _ := get(nil, "http://"+health+"/metrics"); status != 200 ||
		!strings.Contains(metrics, `mtls_requests_total{peer="spiffe://shopmesh/ns/shop/sa/orders"}`) ||
		!strings.Contains(metrics, `mtls_info{allowed="spiffe://shopmesh/ns/shop/sa/orders,spiffe://shopmesh/ns/shop/sa/gateway",identity="spiffe://shopmesh/ns/shop/sa/products"} 1`) {
		t.Errorf("plain /metrics = %d, lacking admitted requests by peer or the identity info:\n%s", status, grep(metrics, "mtls_"))
	}
	if status, _, _ := get(nil, "http://"+health+"/products"); status != 404 {
		t.Errorf("plain health port serves /products: %d", status)
	}
	if _, _, err := get(nil, "http://"+addr+"/products"); err == nil {
		if status, _, _ := get(nil, "http://"+addr+"/products"); status == 200 {
			t.Error("the main port answered plain HTTP")
		}
	}
	_, metrics, _ := get(orders.ClientConfig(wantServer), "https://"+addr+"/metrics")
	for _, reason := range []string{`reason="no_client_certificate"`, `reason="unknown_ca"`, `reason="expired"`} {
		if !strings.Contains(metrics, "tls_handshake_failures_total{"+reason+"}") {
			t.Errorf("handshake failures lack %s:\n%s", reason, grep(metrics, "tls_handshake"))
		}
	}
	if !strings.Contains(metrics, `mtls_denied_total{peer="spiffe://shopmesh/ns/shop/sa/users"} 1`) {
		t.Error("the 403 is not counted by peer identity")
	}
}

// TestRotationWithoutRestart: the server's files are replaced while it runs; new connections
// use the new certificate, and once the old CA leaves the bundle its clients are refused.
func TestRotationWithoutRestart(t *testing.T) {
	oldDir, newDir, live := t.TempDir(), t.TempDir(), t.TempDir()
	now := time.Now()
	oldCA, _ := pki.InitCA(oldDir, 24*time.Hour, false, now)
	newCA, _ := pki.InitCA(newDir, 24*time.Hour, false, now)
	oldPEM, _ := os.ReadFile(filepath.Join(oldDir, pki.CACertFile))
	newPEM, _ := os.ReadFile(filepath.Join(newDir, pki.CACertFile))
	caFile := filepath.Join(live, "ca.pem")
	write := func(path string, data []byte) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(caFile, oldPEM)
	server := issue(t, oldCA, live, "products", now, time.Hour)
	addr, _ := startMTLS(t, material(t, server, caFile), "orders")
	url := "https://" + addr + "/products"
	want := pki.ID{Namespace: "shop", Service: "products"}

	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	write(bundle, append(append([]byte{}, oldPEM...), newPEM...))
	oldClient := material(t, issue(t, oldCA, t.TempDir(), "orders", now, time.Hour), bundle)
	newClient := material(t, issue(t, newCA, t.TempDir(), "orders", now, time.Hour), bundle)

	// Rotation, step 1: trust both CAs and switch the server to a certificate from the new one.
	write(caFile, append(append([]byte{}, oldPEM...), newPEM...))
	fresh := issue(t, newCA, t.TempDir(), "products", now, time.Hour)
	certPEM, _ := os.ReadFile(fresh.cert)
	keyPEM, _ := os.ReadFile(fresh.key)
	write(server.key, keyPEM)
	write(server.cert, certPEM)
	eventually(t, func() bool {
		_, _, errOld := get(oldClient.ClientConfig(want), url)
		_, _, errNew := get(newClient.ClientConfig(want), url)
		return errOld == nil && errNew == nil && servedBy(t, url, newClient, want) == pki.Fingerprint(mustLeaf(t, fresh.cert))
	}, "new certificate in use, both CAs trusted")

	// Step 2: the old CA leaves the bundle; its clients are refused, new ones still served.
	write(caFile, newPEM)
	eventually(t, func() bool {
		_, _, errOld := get(oldClient.ClientConfig(want), url)
		status, _, errNew := get(newClient.ClientConfig(want), url)
		return errOld != nil && errNew == nil && status == 200
	}, "old CA refused after the rotation completes")
}

func servedBy(t *testing.T, url string, m *mtls.Material, want pki.ID) string {
	cfg := m.ClientConfig(want)
	var fp string
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		fp = pki.Fingerprint(cs.PeerCertificates[0])
		return verify(cs)
	}
	if _, _, err := get(cfg, url); err != nil {
		return ""
	}
	return fp
}

func mustLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := pki.LoadCerts(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func eventually(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("not within 8s: %s", what)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
