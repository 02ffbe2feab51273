// Package pki is the platform's certificate authority for workload identity: a CA, and
// short-lived ECDSA P-256 certificates whose identity is a SPIFFE URI SAN
// (spiffe://shopmesh/ns/<namespace>/sa/<service>).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// TrustDomain is the SPIFFE trust domain of every shopmesh identity.
const TrustDomain = "shopmesh"

// File names inside a PKI directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ID is a workload identity.
type ID struct{ Namespace, Service string }

// URI is the identity's SPIFFE ID.
func (id ID) URI() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.Service}
}

func (id ID) String() string { return id.URI().String() }

// Validate checks that both parts are DNS labels, as Kubernetes names are.
func (id ID) Validate() error {
	if !dnsLabel.MatchString(id.Namespace) {
		return fmt.Errorf("namespace %q must be a DNS label (lower-case letters, digits, '-')", id.Namespace)
	}
	if !dnsLabel.MatchString(id.Service) {
		return fmt.Errorf("service %q must be a DNS label (lower-case letters, digits, '-')", id.Service)
	}
	return nil
}

// ParseID reads a SPIFFE ID of this trust domain.
func ParseID(u *url.URL) (ID, error) {
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if u.Scheme != "spiffe" || u.Host != TrustDomain || len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return ID{}, fmt.Errorf("%s is not a spiffe://%s/ns/<namespace>/sa/<service> identity", u, TrustDomain)
	}
	id := ID{Namespace: parts[1], Service: parts[3]}
	return id, id.Validate()
}

// IDFromCert returns the workload identity in a certificate's URI SANs.
func IDFromCert(c *x509.Certificate) (ID, error) {
	if len(c.URIs) != 1 {
		return ID{}, fmt.Errorf("certificate %q has %d URI SANs, want exactly one SPIFFE ID", c.Subject.CommonName, len(c.URIs))
	}
	return ParseID(c.URIs[0])
}

// CA is a loaded certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// InitCA creates a CA valid for ttl in dir. It refuses to replace an existing one unless
// force is set, since every certificate it issued would stop verifying.
func InitCA(dir string, ttl time.Duration, force bool, now time.Time) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if !force {
		if _, err := os.Stat(certPath); err == nil {
			return nil, fmt.Errorf("%s exists; pass --force to replace the CA (certificates it issued stop verifying)", certPath)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"shopmesh"}, CommonName: "shopmesh platform CA"},
		NotBefore:             now.Add(-5 * time.Minute), // tolerate small clock skew
		NotAfter:              now.Add(ttl),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: TrustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA reads the CA in dir.
func LoadCA(dir string) (*CA, error) {
	certs, err := LoadCerts(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("no CA in %s (run 'shopmesh certs init' first): %w", dir, err)
	}
	key, err := LoadKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	if !certs[0].IsCA || !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("%s: the CA certificate and key do not belong together", dir)
	}
	return &CA{Cert: certs[0], Key: key}, nil
}

// Issued names the files of a workload's certificate and key.
type Issued struct {
	CertPath, KeyPath string
	Cert              *x509.Certificate
}

// Issue writes <dir>/<service>.pem and <service>-key.pem for id, valid for ttl, usable as
// server and client certificate; DNS names cover the in-cluster names and localhost.
func (ca *CA) Issue(dir string, id ID, ttl time.Duration, now time.Time) (Issued, error) {
	if err := id.Validate(); err != nil {
		return Issued{}, err
	}
	if ttl <= 0 {
		return Issued{}, errors.New("certificate lifetime must be positive")
	}
	notAfter := now.Add(ttl)
	if notAfter.After(ca.Cert.NotAfter) {
		return Issued{}, fmt.Errorf("a %s certificate would outlive the CA (valid until %s); rotate the CA or shorten --ttl", ttl, ca.Cert.NotAfter.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, err
	}
	svc, ns := id.Service, id.Namespace
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"shopmesh"}, CommonName: svc},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URI()},
		DNSNames:     []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Issued{}, err
	}
	cert, _ := x509.ParseCertificate(der)
	out := Issued{CertPath: filepath.Join(dir, svc+".pem"), KeyPath: filepath.Join(dir, svc+"-key.pem"), Cert: cert}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Issued{}, err
	}
	// Key first: a reader that sees the new certificate must find its key.
	if err := writeKey(out.KeyPath, key); err != nil {
		return Issued{}, err
	}
	if err := writeFileAtomic(out.CertPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return Issued{}, err
	}
	return out, nil
}

// LoadCerts reads every certificate in a PEM file.
func LoadCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return certs, nil
}

// LoadKey reads an EC private key (PKCS #8 PEM).
func LoadKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: want an ECDSA key, got %T", path, k)
	}
	return key, nil
}

// Fingerprint is the SHA-256 of the certificate's DER, in colon-separated hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFileAtomic replaces path in one rename, so that a service reloading it never reads a
// half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// Describe writes what `shopmesh certs show` prints about a certificate.
func Describe(c *x509.Certificate, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "subject:     %s\n", c.Subject)
	fmt.Fprintf(&b, "issuer:      %s\n", c.Issuer)
	if id, err := IDFromCert(c); err == nil {
		fmt.Fprintf(&b, "identity:    %s\n", id)
	} else if len(c.URIs) > 0 {
		fmt.Fprintf(&b, "uri sans:    %v\n", c.URIs)
	}
	if len(c.DNSNames) > 0 {
		fmt.Fprintf(&b, "dns sans:    %s\n", strings.Join(c.DNSNames, ", "))
	}
	if len(c.IPAddresses) > 0 {
		fmt.Fprintf(&b, "ip sans:     %v\n", c.IPAddresses)
	}
	state := "valid"
	switch {
	case now.Before(c.NotBefore):
		state = "not yet valid"
	case now.After(c.NotAfter):
		state = "EXPIRED"
	}
	fmt.Fprintf(&b, "valid:       %s to %s (%s; %s left)\n", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339),
		state, c.NotAfter.Sub(now).Round(time.Minute))
	fmt.Fprintf(&b, "ca:          %v\n", c.IsCA)
	fmt.Fprintf(&b, "sha256:      %s\n", Fingerprint(c))
	return b.String()
}
