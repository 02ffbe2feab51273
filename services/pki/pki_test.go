package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestIssueWorkloadCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := InitCA(dir, 365*24*time.Hour, false, now)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := ca.Issue(dir, ID{"shop", "orders"}, 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := LoadCerts(issued.CertPath)
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: "orders.shop.svc.cluster.local"}); err != nil {
			t.Errorf("certificate does not verify for %v: %v", usage, err)
		}
	}
	id, err := IDFromCert(c)
	if err != nil || id.String() != "spiffe://shopmesh/ns/shop/sa/orders" {
		t.Errorf("identity = %v, %v", id, err)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", c.PublicKey)
	}
	if got := c.NotAfter.Sub(now); got != 24*time.Hour {
		t.Errorf("lifetime %v, want 24h", got)
	}
	info, err := os.Stat(issued.KeyPath)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v (%v), want 0600", info.Mode().Perm(), err)
	}
	loaded, err := LoadCA(dir)
	if err != nil || !loaded.Cert.Equal(ca.Cert) {
		t.Errorf("LoadCA = %v", err)
	}
}

// TestCertificatesAuthenticateBothWays: a real TLS 1.3 handshake on loopback in which each side
// verifies the other against the CA and reads its SPIFFE identity.
func TestCertificatesAuthenticateBothWays(t *testing.T) {
	dir := t.TempDir()
	ca, _ := InitCA(dir, 24*time.Hour, false, time.Now())
	server, _ := ca.Issue(dir, ID{"shop", "products"}, time.Hour, time.Now())
	client, _ := ca.Issue(dir, ID{"shop", "orders"}, time.Hour, time.Now())
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	load := func(i Issued) tls.Certificate {
		c, err := tls.LoadX509KeyPair(i.CertPath, i.KeyPath)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{load(server)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		id, err := IDFromCert(tc.ConnectionState().PeerCertificates[0])
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- id.String()
		_, _ = io.WriteString(c, "ok")
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool,
		Certificates: []tls.Certificate{load(client)}, ServerName: "products.shop.svc.cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	serverID, _ := IDFromCert(conn.ConnectionState().PeerCertificates[0])
	if got := <-peer; got != "spiffe://shopmesh/ns/shop/sa/orders" || serverID.Service != "products" {
		t.Errorf("server saw %q, client saw %v", got, serverID)
	}
}

func TestPKIErrors(t *testing.T) {
	dir := t.TempDir()
	ca, _ := InitCA(dir, time.Hour, false, now)
	if _, err := InitCA(dir, time.Hour, false, now); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second InitCA = %v, want a refusal naming --force", err)
	}
	if _, err := InitCA(dir, time.Hour, true, now); err != nil {
		t.Errorf("InitCA with force = %v", err)
	}
	tests := []struct {
		id   ID
		ttl  time.Duration
		want string
	}{
		{ID{"shop", "Orders!"}, time.Minute, "DNS label"},
		{ID{"", "orders"}, time.Minute, "namespace"},
		{ID{"shop", "orders"}, 48 * time.Hour, "outlive the CA"},
		{ID{"shop", "orders"}, 0, "positive"},
	}
	for _, tt := range tests {
		if _, err := ca.Issue(dir, tt.id, tt.ttl, now); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Issue(%v, %v) = %v, want %q", tt.id, tt.ttl, err, tt.want)
		}
	}
	if _, err := LoadCA(t.TempDir()); err == nil || !strings.Contains(err.Error(), "shopmesh certs init") {
		t.Errorf("LoadCA(empty) = %v, want a hint to run certs init", err)
	}
	for _, bad := range []string{"https://shopmesh/ns/a/sa/b", "spiffe://other/ns/a/sa/b", "spiffe://shopmesh/a/b"} {
		u, _ := url.Parse(bad)
		if _, err := ParseID(u); err == nil {
			t.Errorf("ParseID(%s) accepted", bad)
		}
	}
}

func TestDescribe(t *testing.T) {
	dir := t.TempDir()
	ca, _ := InitCA(dir, 48*time.Hour, false, now)
	issued, _ := ca.Issue(dir, ID{"shop", "users"}, time.Hour, now)
	out := Describe(issued.Cert, now)
	for _, want := range []string{"identity:    spiffe://shopmesh/ns/shop/sa/users", "issuer:      CN=shopmesh platform CA", "dns sans:    users, users.shop", "(valid; 1h0m0s left)", "sha256:      " + Fingerprint(issued.Cert)} {
		if !strings.Contains(out, want) {
			t.Errorf("Describe lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(Describe(issued.Cert, now.Add(2*time.Hour)), "EXPIRED") {
		t.Error("an expired certificate is not shown as EXPIRED")
	}
	if len(strings.Split(Fingerprint(issued.Cert), ":")) != 32 {
		t.Errorf("fingerprint %s is not 32 colon-separated bytes", Fingerprint(issued.Cert))
	}
}
