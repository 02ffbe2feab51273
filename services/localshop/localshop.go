// Package localshop runs the whole shop — gateway, users, products and orders — in one process on this
// machine, each service with its own configuration: what `shopmesh run` and `make run` do.
package localshop

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shopmesh/shopmesh/services/gateway"
	"github.com/shopmesh/shopmesh/services/orders"
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
	name   string
	prefix string // USERS_, PRODUCTS_, ORDERS_: per-service overrides
	addr   string
	run    func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error
}

// Run starts the three services in this process, each with its own configuration, and stops
// them all when ctx is done or any of them fails. Variables prefixed USERS_, PRODUCTS_ or
// ORDERS_ apply to that service only.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("shopmesh run", flag.ContinueOnError)
	fs.SetOutput(stdout)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("shopmesh run takes no arguments, got %q", fs.Args())
	}

	svcs := []*service{
		{name: "users", prefix: "USERS_", run: users.Run},
		{name: "products", prefix: "PRODUCTS_", run: products.Run},
		{name: "orders", prefix: "ORDERS_", run: orders.Run},
		{name: "gateway", prefix: "GATEWAY_", run: gateway.Run},
	}
	defaults := map[string]string{"users": "127.0.0.1:8081", "products": "127.0.0.1:8082", "orders": "127.0.0.1:8083", "gateway": "127.0.0.1:8080"}
	for _, s := range svcs {
		s.addr = lookup(getenv, s.prefix, "HTTP_ADDR", defaults[s.name])
	}
	usersURL, productsURL, ordersURL, gatewayURL := "http://"+svcs[0].addr, "http://"+svcs[1].addr, "http://"+svcs[2].addr, "http://"+svcs[3].addr

	local := map[string]map[string]string{
		"users":    {"HTTP_ADDR": svcs[0].addr},
		"products": {"HTTP_ADDR": svcs[1].addr, "JWKS_URL": usersURL + "/.well-known/jwks.json"},
		"orders": {"HTTP_ADDR": svcs[2].addr, "JWKS_URL": usersURL + "/.well-known/jwks.json",
			"PRODUCTS_URL": productsURL},
		"gateway": {"HTTP_ADDR": svcs[3].addr, "JWKS_URL": usersURL + "/.well-known/jwks.json",
			"USERS_URL": usersURL, "PRODUCTS_URL": productsURL, "ORDERS_URL": ordersURL},
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
	for _, s := range svcs {
		env := serviceEnv(getenv, s.prefix, local[s.name])
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.run(ctx, []string{s.name}, env, stdout); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
				mu.Unlock()
				cancel() // one service down takes the shop down, loudly
			}
		}()
	}

	if err := waitHealthy(ctx, svcs); err == nil {
		fmt.Fprintf(stdout, "\nshopmesh is up:\n  gateway:  %s  (the way in: /users, /products, /orders)\n  users:    %s\n  products: %s\n  orders:   %s\n  admin:    %s\n  try:      curl %s/products\n  stop:     Ctrl-C\n\n",
			gatewayURL, usersURL, productsURL, ordersURL, adminNote, gatewayURL)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lookup returns PREFIX+key, else key, else def.
func lookup(getenv func(string) string, prefix, key, def string) string {
	if v := getenv(prefix + key); v != "" {
		return v
	}
	if v := getenv(key); v != "" && key != "HTTP_ADDR" { // a shared HTTP_ADDR would collide
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
		if key == "HTTP_ADDR" || strings.HasPrefix(key, "DATABASE_SCHEMA") {
			return "" // each service has its own
		}
		return getenv(key)
	}
}

// waitHealthy polls every service's /healthz until all answer or ctx ends.
func waitHealthy(ctx context.Context, svcs []*service) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range svcs {
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			resp, err := client.Get("http://" + s.addr + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not become healthy at %s", s.name, s.addr)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
