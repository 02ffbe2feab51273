package products

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopmesh/shopmesh/api"
	"github.com/shopmesh/shopmesh/services/internal/periodic"
	"github.com/shopmesh/shopmesh/services/internal/pgdb"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// Run starts the products service and serves until ctx is done.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return web.Run(ctx, args, getenv, stdout, "products", LoadConfig, func(c Config) web.Config { return c.HTTP }, NewServer)
}

// NewServer builds the products service from cfg; call the returned func to release it.
func NewServer(ctx context.Context, cfg Config, logger *slog.Logger) (*web.Server, func(), error) {
	doc, err := api.Document("products")
	if err != nil {
		return nil, nil, err
	}
	srv := web.New(cfg.HTTP, logger)
	material, err := srv.EnableMTLS(cfg.TLS)
	if err != nil {
		return nil, nil, err
	}
	jwks, err := material.Transport(http.DefaultTransport.(*http.Transport), "users")
	if err != nil {
		return nil, nil, err
	}
	store, closeFn, err := pgdb.OpenStore(ctx, cfg.Database, Migrations(), srv, logger,
		func() Store { return NewMemoryStore() }, func(p *pgxpool.Pool) Store { return NewPostgresStore(p) },
		pgdb.WithTracing(srv.Tracing.Provider), pgdb.WithPoolMetrics(srv.Registry))
	if err != nil {
		return nil, nil, err
	}
	if cfg.SeedDemo {
		n, err := store.Seed(ctx, DemoCatalog())
		if err != nil {
			closeFn()
			return nil, nil, err
		}
		logger.Info("demo catalog", "added", n)
	}
	verifier := cfg.Auth.NewRemoteVerifier(&http.Client{Timeout: 5 * time.Second, Transport: srv.Tracing.Transport(jwks, "users")})
	addRoutes(srv.Echo, store, verifier, cfg.ReservationTTL, doc)
	// Any replica may sweep: each expired reservation is released once.
	stopSweep := periodic.Start(cfg.ReservationSweep, logger, "releasing expired reservations", func(ctx context.Context) (int64, error) {
		return store.ExpirePending(ctx, now(), 500)
	})
	return srv, func() { stopSweep(); closeFn() }, nil
}
