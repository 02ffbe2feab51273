// Package pgdb opens a PostgreSQL pool confined to one schema and applies a service's
// embedded, versioned migrations to it.
package pgdb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Credentials are the user and password for each new connection, read when it is opened
// (dbsecret.Source reads them from Secrets Manager). Invalidate is called when PostgreSQL
// refuses them, so that the next connection asks again.
type Credentials interface {
	Credentials(ctx context.Context) (user, password string, err error)
	Invalidate()
}

// Option changes how Open connects.
type Option func(*options)

type options struct {
	pool    *pgxpool.Config
	metrics prometheus.Registerer
}

// WithCredentials takes each new connection's user and password from c instead of the URL.
func WithCredentials(c Credentials) Option {
	return func(o *options) {
		cfg := o.pool
		cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			user, password, err := c.Credentials(ctx)
			if err != nil {
				return err
			}
			cc.User, cc.Password = user, password
			return nil
		}
		addTracer(cfg, authFailures{c})
	}
}

// WithTracing adds a client span to every query (pgx's OpenTelemetry tracer, otelpgx), a child
// of the span in the query's context.
func WithTracing(tp trace.TracerProvider) Option {
	return func(o *options) {
		addTracer(o.pool, otelpgx.NewTracer(otelpgx.WithTracerProvider(tp), otelpgx.WithTrimSQLInSpanName()))
	}
}

// WithPoolMetrics registers the pool's statistics (connections by state, acquisitions and the
// time spent waiting for one) with reg.
func WithPoolMetrics(reg prometheus.Registerer) Option {
	return func(o *options) { o.metrics = reg }
}

// addTracer adds t to the connections' tracers: pgx takes one, so several go through multitracer.
func addTracer(cfg *pgxpool.Config, t pgx.QueryTracer) {
	switch cur := cfg.ConnConfig.Tracer.(type) {
	case nil:
		cfg.ConnConfig.Tracer = t
	case *multitracer.Tracer:
		cfg.ConnConfig.Tracer = multitracer.New(append(cur.QueryTracers, t)...)
	default:
		cfg.ConnConfig.Tracer = multitracer.New(cur, t)
	}
}

// authFailures tells the credentials when PostgreSQL refused them. pgx reports the outcome of
// every connection attempt to a Tracer that implements pgx.ConnectTracer.
type authFailures struct{ c Credentials }

func (a authFailures) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return ctx
}

func (a authFailures) TraceConnectEnd(_ context.Context, d pgx.TraceConnectEndData) {
	if IsAuthFailure(d.Err) {
		a.c.Invalidate()
	}
}

func (authFailures) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (authFailures) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// IsAuthFailure reports whether err is PostgreSQL refusing a login: invalid_password (28P01) or
// invalid_authorization_specification (28000, e.g. an unknown role).
func IsAuthFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000")
}

// Open connects to url, creates schema if needed, makes it the search path of every pooled
// connection, and applies the *.sql files in migrations (named NNN_description.sql) that have
// not been applied yet, each in its own transaction.
func Open(ctx context.Context, url, schema string, migrations fs.FS, opts ...Option) (*pgxpool.Pool, error) {
	if !schemaName.MatchString(schema) {
		return nil, fmt.Errorf("schema %q: use lower-case letters, digits and underscores", schema)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	// Each service owns its schema; its queries name tables without a schema.
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	o := options{pool: cfg}
	for _, opt := range opts {
		opt(&o)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if o.metrics != nil {
		if err := o.metrics.Register(poolCollector{pool}); err != nil {
			pool.Close()
			return nil, fmt.Errorf("pool metrics: %w", err)
		}
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", redact(cfg), err)
	}
	if err := migrate(ctx, pool, schema, migrations); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

func load(migrations fs.FS) ([]migration, error) {
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	seen := map[int]string{}
	for _, name := range names {
		prefix, _, ok := strings.Cut(path.Base(name), "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version, as in 001_init.sql", name)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, name, v)
		}
		seen[v] = name
		body, err := fs.ReadFile(migrations, name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{v, name, string(body)})
	}
	if len(out) == 0 {
		return nil, errors.New("no migrations found: expected NNN_name.sql files at the root of the migrations FS")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, migrations fs.FS) error {
	ms, err := load(migrations)
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()

	// Replicas starting together serialise here; the lock is per schema.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1))`, "shopmesh-migrate:"+schema); err != nil {
		return fmt.Errorf("migrate: take lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, "shopmesh-migrate:"+schema)
	}()

	// A login confined to its schema (Bootstrap) may not create schemas, and PostgreSQL checks
	// that before IF NOT EXISTS: create the schema only when it is missing.
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: look for schema %s: %w", schema, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("migrate: create schema %s: %w", schema, err)
		}
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	for _, m := range ms {
		if err := apply(ctx, conn.Conn(), m); err != nil {
			return err
		}
	}
	return nil
}

func apply(ctx context.Context, conn *pgx.Conn, m migration) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version).Scan(&done); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if done {
			return nil
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return fmt.Errorf("migration %s: record: %w", m.name, err)
		}
		return nil
	})
}

// IsUniqueViolation reports whether err is PostgreSQL's unique_violation, optionally on the
// named constraint.
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (constraint == "" || pgErr.ConstraintName == constraint)
}

// redact names the server without the password, for error messages.
func redact(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	if cfg.BeforeConnect != nil { // the user comes from elsewhere (WithCredentials)
		return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
	}
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// Dir returns the directory dir of an embedded file system, where a service keeps its
// migrations.
func Dir(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
