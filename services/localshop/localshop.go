// Package localshop runs the whole shop — gateway, users, products and orders — in one process on this
// machine, each service with its own configuration: what `shopmesh run` and `make run` do.
package localshop

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shopmesh/shopmesh/services/gateway"
	"github.com/shopmesh/shopmesh/services/internal/stockapi"
	"github.com/shopmesh/shopmesh/services/orders"
	"github.com/shopmesh/shopmesh/services/pki"
	"github.com/shopmesh/shopmesh/services/products"
	"github.com/shopmesh/shopmesh/services/users"
)

// With in-memory storage, an admin account with a known password is created so the catalog can
// be edited on a laptop. With DATABASE_URL set, the operator sets ADMIN_EMAIL/ADMIN_PASSWORD.
const (
	LocalAdminEmail    = "admin@shopmesh.local"
	LocalAdminPassword = "shopmesh-admin"
)

type service struct {
	Endpoint
	prefix string // USERS_, PRODUCTS_, ORDERS_, GATEWAY_: per-service overrides
	run    func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error
}

// Run starts the gateway and the three services in this process, each with its own
// configuration, and stops them all when ctx is done or any of them fails. Variables prefixed
// GATEWAY_, USERS_, PRODUCTS_ or ORDERS_ apply to that service only. Between them, the
// services talk mutual TLS with certificates from a local CA unless TLS_MODE=off.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("shopmesh run", flag.ContinueOnError)
	fs.SetOutput(stdout)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("shopmesh run takes no arguments, got %q", fs.Args())
	}
	l, err := ReadLayout(getenv)
	if err != nil {
		return err
	}
	svcs := []*service{
		{Endpoint: l.Users, prefix: "USERS_", run: users.Run},
		{Endpoint: l.Products, prefix: "PRODUCTS_", run: products.Run},
		{Endpoint: l.Orders, prefix: "ORDERS_", run: orders.Run},
		{Endpoint: l.Gateway, prefix: "GATEWAY_", run: gateway.Run},
	}
	usersURL, productsURL, ordersURL := l.URL(l.Users), l.URL(l.Products), l.URL(l.Orders)
	jwks := usersURL + "/.well-known/jwks.json"
	local := map[string]map[string]string{
		"users":    {},
		"products": {"JWKS_URL": jwks},
		"orders":   {"JWKS_URL": jwks, "PRODUCTS_URL": productsURL},
		"gateway":  {"JWKS_URL": jwks, "USERS_URL": usersURL, "PRODUCTS_URL": productsURL, "ORDERS_URL": ordersURL},
	}
	for _, s := range svcs {
		maps.Copy(local[s.Name], l.tlsEnv(s.Endpoint))
		local[s.Name]["HTTP_ADDR"] = s.Addr
	}
	if err := checkReservationTiming(getenv, local); err != nil {
		return err
	}
	adminNote := "set ADMIN_EMAIL and ADMIN_PASSWORD to create an admin account"
	if getenv("DATABASE_URL") == "" && getenv("ADMIN_EMAIL") == "" && getenv("USERS_ADMIN_EMAIL") == "" {
		local["users"]["ADMIN_EMAIL"], local["users"]["ADMIN_PASSWORD"] = LocalAdminEmail, LocalAdminPassword
		adminNote = LocalAdminEmail + " / " + LocalAdminPassword + " (in-memory storage only)"
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	tlsNote := "off (TLS_MODE=off): plain HTTP between services"
	if l.TLS {
		ca, err := l.ProvisionCerts(time.Now())
		if err != nil {
			return fmt.Errorf("local certificates (SHOPMESH_PKI_DIR): %w", err)
		}
		tlsNote = fmt.Sprintf("mutual TLS between services; CA %s (SHA-256 %s…), certificates renewed every %gh",
			l.CAFile(), pki.Fingerprint(ca.Cert)[:23], (CertTTL / 3).Hours())
		wg.Add(1)
		go func() { defer wg.Done(); renewCerts(ctx, l, stdout) }()
	}
	for _, s := range svcs {
		env := serviceEnv(getenv, s.prefix, local[s.Name])
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.run(ctx, []string{s.Name}, env, stdout); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
				mu.Unlock()
				cancel() // one service down takes the shop down, loudly
			}
		}()
	}

	if err := waitHealthy(ctx, l); err == nil {
		fmt.Fprintf(stdout, "\nshopmesh is up:\n  gateway:  http://%s  (the way in: /users, /products, /orders)\n  users:    %s\n  products: %s\n  orders:   %s\n  mTLS:     %s\n  admin:    %s\n  try:      curl http://%s/products\n  stop:     Ctrl-C\n\n",
			l.Gateway.Addr, usersURL, productsURL, ordersURL, tlsNote, adminNote, l.Gateway.Addr)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkReservationTiming checks products' RESERVATION_TTL against orders' CONFIRM_MARGIN as
// this run gives them: each service checks the pair with the other's default, and only here
// are both values known.
func checkReservationTiming(getenv func(string) string, local map[string]map[string]string) error {
	value := func(prefix, name, key string, def time.Duration) (time.Duration, bool) {
		v := serviceEnv(getenv, prefix, local[name])(key)
		if v == "" {
			return def, true
		}
		d, err := time.ParseDuration(v)
		return d, err == nil // a value that does not parse is the service's to report
	}
	ttl, ok1 := value("PRODUCTS_", "products", "RESERVATION_TTL", stockapi.DefaultReservationTTL)
	margin, ok2 := value("ORDERS_", "orders", "CONFIRM_MARGIN", stockapi.DefaultConfirmMargin)
	if !ok1 || !ok2 {
		return nil
	}
	if err := stockapi.CheckTiming(ttl, margin); err != nil {
		return fmt.Errorf("products' RESERVATION_TTL and orders' CONFIRM_MARGIN (set as PRODUCTS_RESERVATION_TTL, ORDERS_CONFIRM_MARGIN, or both unprefixed): %w", err)
	}
	return nil
}

// renewCerts re-issues the workload certificates every CertTTL/3 until ctx is done; the
// services reload the files within seconds, without a restart.
func renewCerts(ctx context.Context, l Layout, stdout io.Writer) {
	t := time.NewTicker(CertTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := l.ProvisionCerts(time.Now()); err != nil {
				fmt.Fprintf(stdout, "renewing the local certificates failed (the current ones stay in use): %v\n", err)
			}
		}
	}
}

// lookup returns PREFIX+key, else key, else def.
func lookup(getenv func(string) string, prefix, key, def string) string {
	if v := getenv(prefix + key); v != "" {
		return v
	}
	if v := getenv(key); v != "" && key != "HTTP_ADDR" && key != "HEALTH_ADDR" { // shared addresses would collide
		return v
	}
	return def
}

// serviceEnv layers one service's environment: PREFIX_KEY, then the local defaults, then the
// process environment.
func serviceEnv(getenv func(string) string, prefix string, local map[string]string) func(string) string {
	return func(key string) string {
		if v := getenv(prefix + key); v != "" {
			return v
		}
		if v, ok := local[key]; ok {
			return v
		}
		if key == "HTTP_ADDR" || key == "HEALTH_ADDR" || strings.HasPrefix(key, "DATABASE_SCHEMA") {
			return "" // each service has its own
		}
		return getenv(key)
	}
}

// waitHealthy polls every service's /healthz until all answer or ctx ends.
func waitHealthy(ctx context.Context, l Layout) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for _, e := range append(l.Services(), l.Gateway) {
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			resp, err := client.Get(l.ProbeURL(e) + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not become healthy at %s", e.Name, e.Addr)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
