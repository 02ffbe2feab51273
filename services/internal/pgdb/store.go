package pgdb

import (
	"context"
	"io/fs"
	"log/slog"
	"net/url"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopmesh/shopmesh/services/internal/dbsecret"
	"github.com/shopmesh/shopmesh/services/internal/envconf"
)

// Config selects a service's storage.
type Config struct {
	URL    string // DATABASE_URL: PostgreSQL; empty keeps data in memory
	Schema string // DATABASE_SCHEMA: the schema the service owns
	// SecretARN (DATABASE_SECRET_ARN) names the Secrets Manager secret holding the user and
	// password, read for each new connection; DATABASE_URL then names only the server.
	SecretARN string
	// AWSRegion (AWS_REGION) and SecretsEndpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER, the SDK's
	// own name for it) locate Secrets Manager.
	AWSRegion       string
	SecretsEndpoint string
}

// ReadConfig reads the storage settings, with defaultSchema as the schema default.
func ReadConfig(r *envconf.Reader, defaultSchema string) Config {
	c := Config{
		URL: r.String("DATABASE_URL", ""), Schema: r.String("DATABASE_SCHEMA", defaultSchema),
		SecretARN: r.String("DATABASE_SECRET_ARN", ""), AWSRegion: r.String("AWS_REGION", ""),
		SecretsEndpoint: r.String("AWS_ENDPOINT_URL_SECRETS_MANAGER", ""),
	}
	if c.SecretARN != "" {
		switch u, err := url.Parse(c.URL); {
		case c.URL == "":
			r.Fail("DATABASE_SECRET_ARN", "needs DATABASE_URL to name the server, as in postgres://host:5432/shopmesh?sslmode=require")
		case err == nil && u.User != nil:
			// Two sources of credentials would hide which one is used.
			r.Fail("DATABASE_URL", "must not carry a user or password when DATABASE_SECRET_ARN is set; the secret provides both")
		}
	}
	return c
}

// ReadinessRegistry is where a PostgreSQL store reports whether the database answers.
type ReadinessRegistry interface {
	AddReadinessCheck(name string, fn func(context.Context) error)
}

// OpenStore returns the in-memory store when no database is configured, else a PostgreSQL
// store on a migrated pool, registered for readiness. Call the returned func to release it.
func OpenStore[S any](ctx context.Context, cfg Config, migrations fs.FS, ready ReadinessRegistry, logger *slog.Logger,
	memory func() S, postgres func(*pgxpool.Pool) S, opts ...Option) (S, func(), error) {
	if cfg.URL == "" {
		logger.Info("storage", "kind", "memory")
		return memory(), func() {}, nil
	}
	if cfg.SecretARN != "" {
		secret, err := dbsecret.New(ctx, cfg.SecretARN, dbsecret.Options{Region: cfg.AWSRegion, Endpoint: cfg.SecretsEndpoint})
		if err != nil {
			var zero S
			return zero, nil, err
		}
		opts = append(opts, WithCredentials(secret))
	}
	pool, err := Open(ctx, cfg.URL, cfg.Schema, migrations, opts...)
	if err != nil {
		var zero S
		return zero, nil, err
	}
	ready.AddReadinessCheck("postgres", pool.Ping)
	logger.Info("storage", "kind", "postgres", "schema", cfg.Schema, "credentials", credentialsKind(cfg))
	return postgres(pool), pool.Close, nil
}

func credentialsKind(cfg Config) string {
	if cfg.SecretARN != "" {
		return "secrets-manager"
	}
	return "url"
}
