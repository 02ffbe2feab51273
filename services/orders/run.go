package orders

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/pgdb"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// Run starts the orders service and serves until ctx is done.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 1 {
		return errors.New("orders takes no arguments; configure it with environment variables (see README)")
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	logger := web.NewLogger(stdout, cfg.HTTP.LogLevel, "orders")
	srv, closeFn, err := NewServer(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeFn()
	return srv.ListenAndServe(ctx)
}

// NewServer builds the orders service from cfg; call the returned func to release it.
func NewServer(ctx context.Context, cfg Config, logger *slog.Logger) (*web.Server, func(), error) {
	srv := web.New(cfg.HTTP, logger)
	var store Store = NewMemoryStore()
	closeFn := func() {}
	if cfg.DatabaseURL != "" {
		pool, err := pgdb.Open(ctx, cfg.DatabaseURL, cfg.DatabaseSchema, Migrations())
		if err != nil {
			return nil, nil, err
		}
		store, closeFn = NewPostgresStore(pool), pool.Close
		srv.AddReadinessCheck("postgres", pool.Ping)
		logger.Info("storage", "kind", "postgres", "schema", cfg.DatabaseSchema)
	} else {
		logger.Info("storage", "kind", "memory")
	}
	// Go keeps only 2 idle connections per host by default; orders calls one host a lot.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	products := NewProductsClient(cfg.ProductsURL, &http.Client{Timeout: cfg.ProductsTimeout, Transport: transport})
	srv.AddReadinessCheck("products", products.Ping)
	// Connections dialled but never used count as busy in the peer's graceful shutdown for
	// 5 s; close them when orders stops so that products can stop promptly too.
	closeStore := closeFn
	closeFn = func() { transport.CloseIdleConnections(); closeStore() }

	// A claim is stale once no request holding it can still be running.
	svc := NewService(store, products, logger, 2*cfg.HTTP.RequestTimeout+cfg.ProductsTimeout)
	verifier := cfg.Auth.NewRemoteVerifier(&http.Client{Timeout: 5 * time.Second})
	addRoutes(srv.Echo, svc, verifier)
	return srv, closeFn, nil
}
