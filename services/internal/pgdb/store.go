package pgdb

import (
	"context"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
)

// Config selects a service's storage.
type Config struct {
	URL    string // DATABASE_URL: PostgreSQL; empty keeps data in memory
	Schema string // DATABASE_SCHEMA: the schema the service owns
}

// ReadConfig reads the storage settings, with defaultSchema as the schema default.
func ReadConfig(r *envconf.Reader, defaultSchema string) Config {
	return Config{URL: r.String("DATABASE_URL", ""), Schema: r.String("DATABASE_SCHEMA", defaultSchema)}
}

// ReadinessRegistry is where a PostgreSQL store reports whether the database answers.
type ReadinessRegistry interface {
	AddReadinessCheck(name string, fn func(context.Context) error)
}

// OpenStore returns the in-memory store when no database is configured, else a PostgreSQL
// store on a migrated pool, registered for readiness. Call the returned func to release it.
func OpenStore[S any](ctx context.Context, cfg Config, migrations fs.FS, ready ReadinessRegistry, logger *slog.Logger,
	memory func() S, postgres func(*pgxpool.Pool) S) (S, func(), error) {
	if cfg.URL == "" {
		logger.Info("storage", "kind", "memory")
		return memory(), func() {}, nil
	}
	pool, err := Open(ctx, cfg.URL, cfg.Schema, migrations)
	if err != nil {
		var zero S
		return zero, nil, err
	}
	ready.AddReadinessCheck("postgres", pool.Ping)
	logger.Info("storage", "kind", "postgres", "schema", cfg.Schema)
	return postgres(pool), pool.Close, nil
}
