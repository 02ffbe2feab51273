package users

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopmesh/shopmesh/services/internal/pgdb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations are the schema's versioned migrations.
func Migrations() fs.FS { return pgdb.Dir(migrationFiles, "migrations") }

// PostgresStore keeps users in PostgreSQL.
type PostgresStore struct{ pool *pgxpool.Pool }

// NewPostgresStore returns a store over pool, whose search path is the users schema.
func NewPostgresStore(pool *pgxpool.Pool) *PostgresStore { return &PostgresStore{pool: pool} }

func (s *PostgresStore) Create(ctx context.Context, u User) error {
	if u.Roles == nil {
		u.Roles = []string{} // pgx sends a nil slice as NULL
	}
	_, err := s.pool.Exec(ctx,
		`INSERT INTO users (id, email, name, password_hash, roles, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		u.ID, u.Email, u.Name, u.PasswordHash, u.Roles, u.CreatedAt)
	if pgdb.IsUniqueViolation(err, "users_email_key") {
		return ErrEmailTaken
	}
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	return nil
}

const userColumns = `id, email, name, password_hash, roles, created_at`

func (s *PostgresStore) ByEmail(ctx context.Context, email string) (User, error) {
	return s.one(ctx, `SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, email)
}

func (s *PostgresStore) ByID(ctx context.Context, id uuid.UUID) (User, error) {
	return s.one(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
}

func (s *PostgresStore) one(ctx context.Context, query string, arg any) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx, query, arg).Scan(&u.ID, &u.Email, &u.Name, &u.PasswordHash, &u.Roles, &u.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrUserNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("select user: %w", err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

func (s *PostgresStore) LoginState(ctx context.Context, key string, now time.Time, p LoginPolicy) (LoginState, error) {
	var st LoginState
	var locked *time.Time
	err := s.pool.QueryRow(ctx,
		`SELECT failures, locked_until FROM login_failures WHERE email_key = $1 AND last_failure >= $2`,
		key, now.Add(-p.Window)).Scan(&st.Failures, &locked)
	if errors.Is(err, pgx.ErrNoRows) {
		return LoginState{}, nil
	}
	if err != nil {
		return LoginState{}, fmt.Errorf("read login failures: %w", err)
	}
	if locked != nil {
		st.LockedUntil = *locked
	}
	return st, nil
}

// RecordLoginFailure counts a failure in one statement, so that replicas counting the same
// address at once neither lose a failure nor lock it for less than its count says.
func (s *PostgresStore) RecordLoginFailure(ctx context.Context, key string, now time.Time, p LoginPolicy) (LoginState, error) {
	var st LoginState
	err := s.pool.QueryRow(ctx, `
INSERT INTO login_failures AS f (email_key, failures, last_failure) VALUES ($1, 1, $2)
ON CONFLICT (email_key) DO UPDATE SET
    failures = CASE WHEN f.last_failure < $3 THEN 1 ELSE f.failures + 1 END,
    last_failure = $2,
    locked_until = CASE WHEN f.last_failure < $3 THEN NULL ELSE f.locked_until END
RETURNING failures`, key, now, now.Add(-p.Window)).Scan(&st.Failures)
	if err != nil {
		return LoginState{}, fmt.Errorf("record login failure: %w", err)
	}
	if d := p.lockFor(st.Failures); d > 0 {
		st.LockedUntil = now.Add(d)
		if _, err := s.pool.Exec(ctx,
			`UPDATE login_failures SET locked_until = greatest(coalesce(locked_until, $2), $2) WHERE email_key = $1`,
			key, st.LockedUntil); err != nil {
			return LoginState{}, fmt.Errorf("lock login: %w", err)
		}
	}
	return st, nil
}

func (s *PostgresStore) ClearLoginFailures(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM login_failures WHERE email_key = $1`, key); err != nil {
		return fmt.Errorf("clear login failures: %w", err)
	}
	return nil
}

// PruneLoginFailures deletes forgotten failures in batches, each a short transaction.
func (s *PostgresStore) PruneLoginFailures(ctx context.Context, before, now time.Time) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `
DELETE FROM login_failures WHERE email_key IN (
    SELECT email_key FROM login_failures
    WHERE last_failure < $1 AND (locked_until IS NULL OR locked_until <= $2)
    LIMIT 1000 FOR UPDATE SKIP LOCKED)`, before, now)
		if err != nil {
			return total, fmt.Errorf("prune login failures: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 1000 {
			return total, nil
		}
	}
}
