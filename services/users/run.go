package users

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopmesh/shopmesh/api"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth"

	"github.com/shopmesh/shopmesh/services/internal/dbbootstrap"
	"github.com/shopmesh/shopmesh/services/internal/periodic"
	"github.com/shopmesh/shopmesh/services/internal/pgdb"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// Run starts the users service and serves until ctx is done.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	// The deploy's bootstrap Job runs the users image once as `users bootstrap-db`: a database
	// login per data service (package dbbootstrap).
	if len(args) == 2 && args[1] == "bootstrap-db" {
		return dbbootstrap.Run(ctx, getenv, stdout)
	}
	return web.Run(ctx, args, getenv, stdout, "users", LoadConfig, func(c Config) web.Config { return c.HTTP }, NewServer)
}

// NewServer builds the users service from cfg; call the returned func to release it.
func NewServer(ctx context.Context, cfg Config, logger *slog.Logger) (*web.Server, func(), error) {
	doc, err := api.Document("users")
	if err != nil {
		return nil, nil, err
	}
	srv := web.New(cfg.HTTP, logger)
	if _, err := srv.EnableMTLS(cfg.TLS); err != nil {
		return nil, nil, err
	}
	var pool *pgxpool.Pool
	store, closeFn, err := pgdb.OpenStore(ctx, cfg.Database, Migrations(), srv, logger,
		func() Store { return NewMemoryStore() }, func(p *pgxpool.Pool) Store { pool = p; return NewPostgresStore(p) },
		pgdb.WithTracing(srv.Tracing.Provider), pgdb.WithPoolMetrics(srv.Registry))
	if err != nil {
		return nil, nil, err
	}
	signer, err := newSigner(ctx, cfg, pool, logger)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	svc, err := NewService(store, signer, cfg.Limits)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	stopPruning := periodic.Start(time.Minute, logger, "pruning failed logins", svc.PruneLoginFailures)
	release := func() { stopPruning(); closeFn() }
	if cfg.AdminEmail != "" {
		created, err := svc.EnsureAdmin(ctx, cfg.AdminEmail, cfg.AdminPassword)
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("create admin account: %w", err)
		}
		logger.Info("admin account", "email", cfg.AdminEmail, "created", created)
	}
	verifier := jwtauth.NewVerifier(signer.Keys(), cfg.Issuer, cfg.Audience, jwtauth.Leeway)
	addRoutes(srv.Echo, svc, signer, verifier, doc)
	logger.Info("password checks", "concurrent", cfg.Limits.PasswordChecks, "wait", cfg.Limits.PasswordWait.String(),
		"login_max_failures", cfg.Limits.Login.MaxFailures, "login_lock", cfg.Limits.Login.Lock.String())
	return srv, release, nil
}

// newSigner signs with, in order: the key file, the key shared through the database, or a key
// generated for this process (in-memory storage: nothing outlives the process anyway).
func newSigner(ctx context.Context, cfg Config, pool *pgxpool.Pool, logger *slog.Logger) (*jwtauth.Signer, error) {
	var extra []ed25519.PublicKey
	for _, f := range cfg.ExtraKeyFiles {
		pub, err := jwtauth.LoadPublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("JWT_EXTRA_PUBLIC_KEY_FILES: %w", err)
		}
		extra = append(extra, pub)
	}
	var key ed25519.PrivateKey
	if cfg.SigningKeyFile != "" {
		k, err := jwtauth.LoadPrivateKey(cfg.SigningKeyFile)
		if err != nil {
			return nil, fmt.Errorf("JWT_SIGNING_KEY_FILE: %w", err)
		}
		key = k
	} else if pool != nil {
		k, created, err := sharedSigningKey(ctx, pool)
		if err != nil {
			return nil, err
		}
		key = k
		logger.Info("signing key from the database", "created", created)
	} else {
		k, err := jwtauth.GenerateKey()
		if err != nil {
			return nil, err
		}
		key = k
		logger.Warn("JWT_SIGNING_KEY_FILE is not set: generated a signing key for this process only; tokens will not survive a restart")
	}
	s := jwtauth.NewSigner(key, cfg.Issuer, cfg.Audience, cfg.TokenTTL, extra...)
	logger.Info("token signing", "kid", jwtauth.KeyID(key.Public().(ed25519.PublicKey)), "published_keys", len(s.JWKS().Keys))
	return s, nil
}
