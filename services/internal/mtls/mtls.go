// Package mtls is native mutual TLS for services outside a mesh: certificate, key and CA from
// files (reloaded when they change), TLS 1.3 only, client certificates required, and peers
// identified by their SPIFFE URI SAN.
package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
	"github.com/shopmesh/shopmesh/services/pki"
)

// Modes of TLS_MODE.
const (
	ModeOff  = "off"  // plain HTTP: Istio provides mTLS in the cluster, or a laptop without it
	ModeMTLS = "mtls" // the service terminates mutual TLS itself
)

// Config is the TLS part of a service's configuration.
type Config struct {
	Mode     string   // TLS_MODE: off or mtls
	CertFile string   // TLS_CERT_FILE: this workload's certificate
	KeyFile  string   // TLS_KEY_FILE: its key
	CAFile   string   // TLS_CA_FILE: the platform CA (several may be concatenated during rotation)
	Allowed  []string // TLS_ALLOWED_CALLERS: service names in this namespace allowed to call
	// HEALTH_ADDR: plain-HTTP listener for /healthz, /readyz and /metrics while the main port
	// requires client certificates (kubelet and Prometheus have none).
	HealthAddr string
}

// ReadConfig reads the TLS settings; allowed is the service's default allow-list and
// healthAddr the default of HEALTH_ADDR.
func ReadConfig(r *envconf.Reader, allowed []string, healthAddr string) Config {
	c := Config{
		Mode:       r.String("TLS_MODE", ModeOff),
		CertFile:   r.String("TLS_CERT_FILE", ""),
		KeyFile:    r.String("TLS_KEY_FILE", ""),
		CAFile:     r.String("TLS_CA_FILE", ""),
		Allowed:    allowed,
		HealthAddr: r.String("HEALTH_ADDR", healthAddr),
	}
	if list := r.List("TLS_ALLOWED_CALLERS"); len(list) > 0 {
		c.Allowed = list
	}
	switch c.Mode {
	case ModeOff:
	case ModeMTLS:
		for key, v := range map[string]string{"TLS_CERT_FILE": c.CertFile, "TLS_KEY_FILE": c.KeyFile, "TLS_CA_FILE": c.CAFile} {
			if v == "" {
				r.Fail(key, "must be set when TLS_MODE=mtls")
			}
		}
	default:
		r.Fail("TLS_MODE", "must be off or mtls, got %q", c.Mode)
	}
	for _, a := range c.Allowed {
		if _, err := resolve(pki.ID{Namespace: "shop"}, a); err != nil {
			r.Fail("TLS_ALLOWED_CALLERS", "%v", err)
		}
	}
	return c
}

// Enabled reports whether the service does mutual TLS itself.
func (c Config) Enabled() bool { return c.Mode == ModeMTLS }

// CheckURL fails key unless its URL uses https while mutual TLS is on: a plain request to a
// peer that requires TLS would only fail later, less clearly.
func (c Config) CheckURL(r *envconf.Reader, key, raw string) {
	if u, err := url.Parse(raw); c.Enabled() && err == nil && u.Scheme != "https" {
		r.Fail(key, "must be an https:// URL when TLS_MODE=mtls, got %q", raw)
	}
}

// resolve turns a service name (in self's namespace) or a full SPIFFE ID into an identity.
func resolve(self pki.ID, nameOrID string) (pki.ID, error) {
	if strings.HasPrefix(nameOrID, "spiffe://") {
		u, err := url.Parse(nameOrID)
		if err != nil {
			return pki.ID{}, fmt.Errorf("%q is not a SPIFFE ID: %w", nameOrID, err)
		}
		return pki.ParseID(u)
	}
	id := pki.ID{Namespace: self.Namespace, Service: nameOrID}
	if err := id.Validate(); err != nil {
		return pki.ID{}, fmt.Errorf("%q is neither a service name nor a spiffe://shopmesh/ns/<namespace>/sa/<service> ID: %w", nameOrID, err)
	}
	return id, nil
}

// Material is the current certificate, key and CA pool, reloaded when the files change, so
// that new connections use rotated material without a restart.
type Material struct {
	cfg    Config
	logger *slog.Logger

	mu     sync.RWMutex
	cert   *tls.Certificate
	pool   *x509.CertPool
	id     pki.ID
	stamps map[string]time.Time
}

// Load reads the files named in cfg.
func Load(cfg Config, logger *slog.Logger) (*Material, error) {
	m := &Material{cfg: cfg, logger: logger}
	if err := m.reload(); err != nil {
		return nil, err
	}
	return m, nil
}

// Start loads the material and reloads it when its files change, until stop is called.
func Start(cfg Config, logger *slog.Logger) (m *Material, stop func(), err error) {
	m, err = Load(cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go m.Watch(done, 2*time.Second)
	var once sync.Once
	return m, func() { once.Do(func() { close(done) }) }, nil
}

// Peer resolves a service name in this workload's namespace, or a full SPIFFE ID.
func (m *Material) Peer(nameOrID string) (pki.ID, error) { return resolve(m.ID(), nameOrID) }

// ID is this workload's identity, from its certificate.
func (m *Material) ID() pki.ID {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.id
}

func (m *Material) reload() error {
	cert, err := tls.LoadX509KeyPair(m.cfg.CertFile, m.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("TLS_CERT_FILE: %w", err)
	}
	id, err := pki.IDFromCert(leaf)
	if err != nil {
		return fmt.Errorf("TLS_CERT_FILE: %w", err)
	}
	cert.Leaf = leaf
	cas, err := pki.LoadCerts(m.cfg.CAFile)
	if err != nil {
		return fmt.Errorf("TLS_CA_FILE: %w", err)
	}
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	stamps := map[string]time.Time{}
	for _, f := range []string{m.cfg.CertFile, m.cfg.KeyFile, m.cfg.CAFile} {
		if st, err := os.Stat(f); err == nil {
			stamps[f] = st.ModTime()
		}
	}
	m.mu.Lock()
	m.cert, m.pool, m.id, m.stamps = &cert, pool, id, stamps
	m.mu.Unlock()
	return nil
}

// changed reports whether any file's modification time differs from the loaded one.
func (m *Material) changed() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for f, t := range m.stamps {
		st, err := os.Stat(f)
		if err != nil || !st.ModTime().Equal(t) {
			return true
		}
	}
	return false
}

// Watch reloads the material whenever a file changes, until stop is closed. A broken new file
// is logged and the previous material kept.
func (m *Material) Watch(stop <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if !m.changed() {
				continue
			}
			if err := m.reload(); err != nil {
				m.logger.Error("TLS material changed but cannot be loaded; keeping the previous one", "error", err)
				continue
			}
			m.logger.Info("TLS material reloaded", "identity", m.ID().String())
		}
	}
}

func (m *Material) current() (*tls.Certificate, *x509.CertPool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cert, m.pool
}

// ServerConfig requires a client certificate from the current CA, over TLS 1.3.
func (m *Material) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Each handshake takes the material as it is now, so rotations apply to new
		// connections at once.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := m.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
			}, nil
		},
	}
}

// ClientConfig presents this workload's certificate and accepts only a server whose
// certificate chains to the current CA and carries identity want.
func (m *Material) ClientConfig(want pki.ID) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := m.current()
			return cert, nil
		},
		// The CA may rotate, so the chain is verified here against the current pool instead
		// of a RootCAs fixed at start; the name check is the SPIFFE identity, not DNS.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			_, pool := m.current()
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			got, err := pki.IDFromCert(cs.PeerCertificates[0])
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("server identity is %s, want %s", got, want)
			}
			return nil
		},
	}
}

// Transport returns base for a client of the workload peer (a service name or SPIFFE ID):
// with m nil (TLS_MODE=off), base unchanged; otherwise a copy that presents this workload's
// certificate and requires peer's identity from the server.
func (m *Material) Transport(base *http.Transport, peer string) (*http.Transport, error) {
	if m == nil {
		return base, nil
	}
	want, err := m.Peer(peer)
	if err != nil {
		return nil, err
	}
	t := base.Clone()
	t.TLSClientConfig = m.ClientConfig(want)
	return t, nil
}

// DialTLS dials a TLS connection that must reach the identity peers lists for its address
// ("host:port"), for a transport whose upstreams are different workloads (the gateway's).
func (m *Material) DialTLS(peers map[string]pki.ID, dialer *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		want, ok := peers[addr]
		if !ok {
			return nil, fmt.Errorf("no workload identity is configured for upstream %s", addr)
		}
		d := &tls.Dialer{NetDialer: dialer, Config: m.ClientConfig(want)}
		return d.DialContext(ctx, network, addr)
	}
}
