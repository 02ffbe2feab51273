package products

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

// Run starts the products service and serves until ctx is done.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 1 {
		return errors.New("products takes no arguments; configure it with environment variables (see README)")
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	logger := web.NewLogger(stdout, cfg.HTTP.LogLevel, "products")
	srv, closeFn, err := NewServer(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeFn()
	return srv.ListenAndServe(ctx)
}

// NewServer builds the products service from cfg; call the returned func to release it.
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
	if cfg.SeedDemo {
		n, err := store.Seed(ctx, DemoCatalog())
		if err != nil {
			closeFn()
			return nil, nil, err
		}
		logger.Info("demo catalog", "added", n)
	}
	verifier := cfg.Auth.NewRemoteVerifier(&http.Client{Timeout: 5 * time.Second})
	addRoutes(srv.Echo, store, verifier)
	return srv, closeFn, nil
}
