package localshop

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/shopmesh/shopmesh/services/pki"
)

// DefaultPKIDir is where the local CA and workload certificates live (git-ignored).
const DefaultPKIDir = ".shopmesh/pki"

// Namespace is the identities' namespace, the same as in the cluster.
const Namespace = "shop"

// Local certificates live a day and are renewed every CertTTL/3 while the shop runs; the
// services pick the new files up without a restart.
const CertTTL = 24 * time.Hour

// Endpoint is where one service of the local shop listens.
type Endpoint struct {
	Name   string
	Addr   string // host:port of its API
	Health string // host:port of its plain health port while it requires mTLS
}

// Layout is where the local shop's services listen and whether they talk mutual TLS.
type Layout struct {
	TLS                              bool
	PKIDir                           string
	Gateway, Users, Products, Orders Endpoint
}

// ReadLayout reads the layout from the environment: TLS_MODE (mtls by default),
// SHOPMESH_PKI_DIR, and each service's <PREFIX>HTTP_ADDR and <PREFIX>HEALTH_ADDR.
func ReadLayout(getenv func(string) string) (Layout, error) {
	l := Layout{PKIDir: getenv("SHOPMESH_PKI_DIR")}
	if l.PKIDir == "" {
		l.PKIDir = DefaultPKIDir
	}
	switch mode := getenv("TLS_MODE"); mode {
	case "", "mtls":
		l.TLS = true
	case "off":
	default:
		return Layout{}, fmt.Errorf("TLS_MODE must be mtls (the default for shopmesh run) or off, got %q", mode)
	}
	ep := func(name, prefix, addr, health string) Endpoint {
		return Endpoint{Name: name, Addr: lookup(getenv, prefix, "HTTP_ADDR", addr), Health: lookup(getenv, prefix, "HEALTH_ADDR", health)}
	}
	// The gateway's own port is plain HTTP: it has no separate health port.
	l.Gateway = Endpoint{Name: "gateway", Addr: lookup(getenv, "GATEWAY_", "HTTP_ADDR", "127.0.0.1:8080")}
	l.Users = ep("users", "USERS_", "127.0.0.1:8081", "127.0.0.1:9081")
	l.Products = ep("products", "PRODUCTS_", "127.0.0.1:8082", "127.0.0.1:9082")
	l.Orders = ep("orders", "ORDERS_", "127.0.0.1:8083", "127.0.0.1:9083")
	return l, nil
}

// Services are the three services behind the gateway.
func (l Layout) Services() []Endpoint { return []Endpoint{l.Users, l.Products, l.Orders} }

// URL is the base URL of a service behind the gateway (https under mutual TLS).
func (l Layout) URL(e Endpoint) string {
	if l.TLS {
		return "https://" + e.Addr
	}
	return "http://" + e.Addr
}

// ProbeURL is where e answers /healthz and /readyz without a client certificate.
func (l Layout) ProbeURL(e Endpoint) string {
	if l.TLS && e.Health != "" {
		return "http://" + e.Health
	}
	return "http://" + e.Addr
}

// CAFile is the platform CA's certificate.
func (l Layout) CAFile() string { return filepath.Join(l.PKIDir, pki.CACertFile) }

// CertFiles are a workload's certificate and key in the PKI directory.
func (l Layout) CertFiles(service string) (cert, key string) {
	return filepath.Join(l.PKIDir, service+".pem"), filepath.Join(l.PKIDir, service+"-key.pem")
}

// ProvisionCerts makes sure the PKI directory has a CA (creating one valid for a year on
// first use) and issues a fresh certificate for every workload of the shop.
func (l Layout) ProvisionCerts(now time.Time) (*pki.CA, error) {
	ca, err := pki.LoadCA(l.PKIDir)
	if errors.Is(err, fs.ErrNotExist) {
		ca, err = pki.InitCA(l.PKIDir, 365*24*time.Hour, false, now)
	}
	if err != nil {
		return nil, err
	}
	for _, svc := range []string{"gateway", "users", "products", "orders"} {
		if _, err := ca.Issue(l.PKIDir, pki.ID{Namespace: Namespace, Service: svc}, CertTTL, now); err != nil {
			return nil, fmt.Errorf("issue the %s certificate in %s: %w", svc, l.PKIDir, err)
		}
	}
	return ca, nil
}

// tlsEnv is the TLS part of a workload's environment in the local shop.
func (l Layout) tlsEnv(e Endpoint) map[string]string {
	if !l.TLS {
		return map[string]string{"TLS_MODE": "off"}
	}
	cert, key := l.CertFiles(e.Name)
	env := map[string]string{"TLS_MODE": "mtls", "TLS_CERT_FILE": cert, "TLS_KEY_FILE": key, "TLS_CA_FILE": l.CAFile()}
	if e.Health != "" {
		env["HEALTH_ADDR"] = e.Health
	}
	return env
}
