package orders

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

// Run starts the orders service and serves until ctx is done.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return web.Run(ctx, args, getenv, stdout, "orders", LoadConfig, func(c Config) web.Config { return c.HTTP }, NewServer)
}

// NewServer builds the orders service from cfg; call the returned func to release it.
func NewServer(ctx context.Context, cfg Config, logger *slog.Logger) (*web.Server, func(), error) {
	doc, err := api.Document("orders")
	if err != nil {
		return nil, nil, err
	}
	srv := web.New(cfg.HTTP, logger)
	material, err := srv.EnableMTLS(cfg.TLS)
	if err != nil {
		return nil, nil, err
	}
	// Go keeps only 2 idle connections per host by default; orders calls one host a lot.
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	transport, err := material.Transport(base, "products")
	if err != nil {
		return nil, nil, err
	}
	jwks, err := material.Transport(http.DefaultTransport.(*http.Transport), "users")
	if err != nil {
		return nil, nil, err
	}
	store, closeStore, err := pgdb.OpenStore(ctx, cfg.Database, Migrations(), srv, logger,
		func() Store { return NewMemoryStore() }, func(p *pgxpool.Pool) Store { return NewPostgresStore(p) },
		pgdb.WithTracing(srv.Tracing.Provider), pgdb.WithPoolMetrics(srv.Registry))
	if err != nil {
		return nil, nil, err
	}
	products := NewProductsClient(cfg.ProductsURL, &http.Client{Timeout: cfg.ProductsTimeout, Transport: srv.Tracing.Transport(transport, "products")})
	srv.AddReadinessCheck("products", products.Ping)
	// Connections dialled but never used count as busy in the peer's graceful shutdown for
	// 5 s; close them when orders stops so that products can stop promptly too.
	closeFn := func() { transport.CloseIdleConnections(); closeStore() }

	// A claim is stale once no request holding it can still be running.
	svc := NewService(store, products, logger, 2*cfg.HTTP.RequestTimeout+cfg.ProductsTimeout, cfg.KeyTTL)
	stopExpiry := periodic.Start(10*time.Minute, logger, "expiring idempotency keys", func(ctx context.Context) (int64, error) {
		return svc.ExpireKeys(ctx, 1000)
	})
	// At start-up and every RECONCILE_INTERVAL (30 s): far inside products' RESERVATION_TTL, so
	// that a stored order's reservation is confirmed long before it could expire.
	svc.faults, svc.margin = cfg.faults, cfg.ConfirmMargin
	stopReconcile := periodic.Start(cfg.Reconcile, logger, "confirming stored orders' reservations", svc.ReconcileStock)
	verifier := cfg.Auth.NewRemoteVerifier(&http.Client{Timeout: 5 * time.Second, Transport: srv.Tracing.Transport(jwks, "users")})
	addRoutes(srv.Echo, svc, verifier, doc)
	return srv, func() { stopReconcile(); stopExpiry(); closeFn() }, nil
}
