package scenario

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/mtls"
	"github.com/shopmesh/shopmesh/services/pki"
)

// Workload is a service that terminates mutual TLS: its API address and its plain port for
// probes and metrics.
type Workload struct{ Name, Addr, Health string }

// MTLSOptions configures the mTLS scenario.
type MTLSOptions struct {
	Gateway   string     // base URL of the gateway (plain HTTP: the way in)
	Services  []Workload // users, products, orders
	PKIDir    string     // the platform CA (certificate and key) and the gateway's certificate
	Namespace string     // the workloads' namespace
}

// MTLS runs the scenario and writes its report to out: the configuration, a customer's
// journey with every service-to-service hop and the identities verified on it, and five
// attempts that must be refused. It returns an error when any expectation fails.
func MTLS(ctx context.Context, o MTLSOptions, out io.Writer) error {
	ca, err := pki.LoadCA(o.PKIDir)
	if err != nil {
		return err
	}
	s := &mtlsRun{o: o, ca: ca, out: out, dir: filepath.Join(o.PKIDir, "scenario")}
	defer s.closeClients()
	defer os.RemoveAll(s.dir) // the scenario's throw-away certificates
	steps := []func(context.Context) error{s.configuration, s.journey, s.refusals}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if s.failed > 0 {
		return fmt.Errorf("%d expectation(s) failed", s.failed)
	}
	fmt.Fprintln(out, "\nall expectations met")
	return nil
}

type mtlsRun struct {
	o       MTLSOptions
	ca      *pki.CA
	out     io.Writer
	dir     string
	failed  int
	clients []*http.Client
}

func (s *mtlsRun) id(svc string) pki.ID { return pki.ID{Namespace: s.o.Namespace, Service: svc} }

func (s *mtlsRun) expect(ok bool, tw io.Writer, format string, args ...any) {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		s.failed++
	}
	fmt.Fprintf(tw, mark+"\t"+format+"\n", args...)
}

// 1. What runs: the CA, and each workload's identity and allow-list as it reports them.
func (s *mtlsRun) configuration(ctx context.Context) error {
	c := s.ca.Cert
	fmt.Fprintf(s.out, "1. configuration\n  mode:     mutual TLS 1.3 between services; the gateway's public port is plain HTTP (TLS ends at the load balancer)\n")
	fmt.Fprintf(s.out, "  CA:       %s, valid until %s\n            SHA-256 %s\n", c.Subject.String(), c.NotAfter.Format(time.RFC3339), pki.Fingerprint(c))
	tw := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  \tworkload\tidentity\tallowed callers\n")
	fmt.Fprintf(tw, "  \tgateway\t%s\t(public; it calls the three services)\n", s.id("gateway"))
	for _, w := range s.o.Services {
		m, err := scrape(ctx, w)
		if err != nil {
			return err
		}
		info := m.find("mtls_info")
		if len(info) == 0 {
			s.expect(false, tw, "%s\t-\tnot running mTLS (TLS_MODE=off?)", w.Name)
			continue
		}
		identity, allowed := info[0].labels["identity"], info[0].labels["allowed"]
		s.expect(identity == s.id(w.Name).String(), tw, "%s\t%s\t%s", w.Name, identity, shortIDs(allowed))
	}
	return tw.Flush()
}

// 2. A customer's journey through the gateway; each step's hops come from the services'
// counters of verified callers.
func (s *mtlsRun) journey(ctx context.Context) error {
	fmt.Fprintf(s.out, "\n2. success: a customer through the gateway, every hop mutual TLS\n")
	client := &http.Client{Timeout: 10 * time.Second}
	s.clients = append(s.clients, client)
	email := "mtls-" + uuid.NewString()[:8] + "@example.com"
	var token, product string
	type step struct {
		name string
		want []string // hops that must appear, "caller→callee"
		do   func() error
	}
	steps := []step{
		{"register  POST /users", []string{"gateway→users"}, func() error {
			_, err := call(ctx, client, http.MethodPost, s.o.Gateway+"/users", "", map[string]string{"email": email, "password": "scenario-password", "name": "mTLS scenario"}, http.StatusCreated)
			return err
		}},
		{"login     POST /users/login", []string{"gateway→users"}, func() (err error) {
			token, err = login(ctx, client, s.o.Gateway, email, "scenario-password")
			return err
		}},
		{"list      GET /products", []string{"gateway→products"}, func() (err error) {
			product, err = orderableProduct(ctx, client, s.o.Gateway, RateLimitOptions{})
			return err
		}},
		{"order     POST /orders", []string{"gateway→orders", "orders→products"}, func() error {
			_, err := call(ctx, client, http.MethodPost, s.o.Gateway+"/orders", token,
				map[string]any{"items": []map[string]any{{"product_id": product, "quantity": 1}}}, http.StatusCreated)
			return err
		}},
	}
	tw := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
	for _, st := range steps {
		before, err := s.admitted(ctx)
		if err != nil {
			return err
		}
		if err := st.do(); err != nil {
			s.expect(false, tw, "%s\t%v", st.name, err)
			continue
		}
		after, err := s.admitted(ctx)
		if err != nil {
			return err
		}
		var hops []string
		seen := map[string]bool{}
		for key, n := range after {
			if n > before[key] {
				seen[key] = true
				hops = append(hops, key)
			}
		}
		sort.Strings(hops)
		missing := []string{}
		for _, h := range st.want {
			if !seen[h] {
				missing = append(missing, h)
			}
		}
		s.expect(len(missing) == 0, tw, "%s\t%s", st.name, strings.Join(hops, ", ")+missingNote(missing))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "  on each hop the callee verified the caller's certificate and SPIFFE ID against its allow-list,\n  and the caller accepted only a server certificate naming the callee (spiffe://%s/ns/%s/sa/<callee>);\n  hops to users outside the users steps fetch its signing keys (JWKS), once per process\n", pki.TrustDomain, s.o.Namespace)
	return nil
}

func missingNote(missing []string) string {
	if len(missing) == 0 {
		return ""
	}
	return "  (expected but not seen: " + strings.Join(missing, ", ") + ")"
}

// admitted is every service's count of verified requests, keyed "caller→callee".
func (s *mtlsRun) admitted(ctx context.Context) (map[string]float64, error) {
	out := map[string]float64{}
	for _, w := range s.o.Services {
		m, err := scrape(ctx, w)
		if err != nil {
			return nil, err
		}
		for _, smp := range m.find("mtls_requests_total") {
			out[shortIDs(smp.labels["peer"])+"→"+w.Name] += smp.value
		}
	}
	return out, nil
}

// 3. Five attempts that must be refused, and how each was.
func (s *mtlsRun) refusals(ctx context.Context) error {
	fmt.Fprintf(s.out, "\n3. refused, as expected\n")
	byName := map[string]Workload{}
	for _, w := range s.o.Services {
		byName[w.Name] = w
	}
	products, orders, users := byName["products"], byName["orders"], byName["users"]
	if products.Addr == "" || orders.Addr == "" || users.Addr == "" {
		return errors.New("the scenario needs the users, products and orders workloads")
	}
	now := time.Now()
	valid, err := s.material(s.ca, "gateway", now, time.Hour)
	if err != nil {
		return err
	}
	otherCA, err := pki.InitCA(filepath.Join(s.dir, "other-ca"), 24*time.Hour, true, now)
	if err != nil {
		return err
	}
	foreign, err := s.material(otherCA, "gateway", now, time.Hour)
	if err != nil {
		return err
	}
	expired, err := s.material(s.ca, "gateway", now.Add(-48*time.Hour), time.Hour)
	if err != nil {
		return err
	}
	notAllowed, err := s.material(s.ca, "products", now, time.Hour)
	if err != nil {
		return err
	}
	noCert := valid.ClientConfig(s.id("products"))
	noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }

	tw := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  \tattempt\tcall\trefused with\n")
	cases := []struct {
		name, target string
		w            Workload // whom the call reaches
		cfg          *tls.Config
		want403      bool
		reason       string // the server's tls_handshake_failures_total reason, when it refuses
	}{
		{"no client certificate", "products", products, noCert, false, "no_client_certificate"},
		{"certificate from another CA", "products", products, foreign.ClientConfig(s.id("products")), false, "unknown_ca"},
		{"expired certificate", "products", products, expired.ClientConfig(s.id("products")), false, "expired"},
		{"identity not on the allow-list", "orders", orders, notAllowed.ClientConfig(s.id("orders")), true, ""},
		// The caller expects products but reaches users (a misrouted or impersonating server).
		{"server with the wrong identity", "products", users, valid.ClientConfig(s.id("products")), false, ""},
	}
	for _, c := range cases {
		path := "/" + c.target
		before, err := scrape(ctx, c.w)
		if err != nil {
			return err
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.cfg}}
		s.clients = append(s.clients, client)
		status, detail, err := get(ctx, client, "https://"+c.w.Addr+path)
		call := fmt.Sprintf("GET https://%s%s as %s", c.w.Name, path, clientName(c.cfg))
		if c.w.Name != c.target {
			call = fmt.Sprintf("GET %s sent to %s as %s", path, c.w.Name, clientName(c.cfg))
		}
		switch {
		case c.want403:
			s.expect(err == nil && status == http.StatusForbidden, tw, "%s\t%s\t%s", c.name, call, describe(status, detail, err))
		default:
			how := describe(status, detail, err)
			if c.reason != "" {
				// The server counts the failure after sending its alert, so the client may see
				// the refusal first: give the counter a moment.
				key := `reason="` + c.reason + `"`
				counted := false
				for deadline := time.Now().Add(2 * time.Second); !counted && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					after, serr := scrape(ctx, c.w)
					if serr != nil {
						return serr
					}
					counted = after.sum("tls_handshake_failures_total", key) > before.sum("tls_handshake_failures_total", key)
				}
				if counted {
					how += "; " + c.w.Name + " counted " + c.reason
				} else {
					how += "; " + c.w.Name + " did not count " + c.reason
					err = nil // the server must have seen the refusal too
				}
			}
			s.expect(err != nil, tw, "%s\t%s\t%s", c.name, call, how)
		}
	}
	return tw.Flush()
}

// material issues a certificate for svc from ca, valid from notBefore for ttl, and loads it
// with the platform CA as the trust anchor for servers.
func (s *mtlsRun) material(ca *pki.CA, svc string, notBefore time.Time, ttl time.Duration) (*mtls.Material, error) {
	dir := filepath.Join(s.dir, uuid.NewString()[:8])
	issued, err := ca.Issue(dir, s.id(svc), ttl, notBefore)
	if err != nil {
		return nil, err
	}
	return mtls.Load(mtls.Config{Mode: mtls.ModeMTLS, CertFile: issued.CertPath, KeyFile: issued.KeyPath,
		CAFile: filepath.Join(s.o.PKIDir, pki.CACertFile)}, slog.New(slog.DiscardHandler))
}

func (s *mtlsRun) closeClients() {
	for _, c := range s.clients {
		c.CloseIdleConnections()
	}
}

func clientName(cfg *tls.Config) string {
	cert, err := cfg.GetClientCertificate(nil)
	if err != nil || cert == nil || cert.Leaf == nil {
		return "a client without a certificate"
	}
	id, err := pki.IDFromCert(cert.Leaf)
	if err != nil {
		return cert.Leaf.Subject.CommonName
	}
	return id.Service
}

func describe(status int, detail string, err error) string {
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // drop the method and URL, keep the reason
		}
		return "handshake failed: " + err.Error()
	}
	return strconv.Itoa(status) + " " + detail
}

func get(ctx context.Context, client *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var p struct {
		Detail string `json:"detail"`
	}
	if jsonErr := json.Unmarshal(body, &p); jsonErr == nil && p.Detail != "" {
		return resp.StatusCode, p.Detail, nil
	}
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}

// shortIDs shows spiffe://shopmesh/ns/<ns>/sa/<svc> identities by service name.
func shortIDs(list string) string {
	var out []string
	for _, id := range strings.Split(list, ",") {
		if i := strings.LastIndex(id, "/sa/"); i >= 0 {
			id = id[i+len("/sa/"):]
		}
		out = append(out, id)
	}
	return strings.Join(out, ", ")
}
