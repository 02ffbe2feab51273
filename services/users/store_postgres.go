package users

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

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
