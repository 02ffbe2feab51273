// Package pgtest gives tests a PostgreSQL schema of their own on the server DATABASE_URL names.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopmesh/shopmesh/services/internal/pgdb"
	"github.com/shopmesh/shopmesh/services/internal/testenv"
)

// URL returns DATABASE_URL (see testenv.Require for when the test is skipped).
func URL(t testing.TB) string {
	t.Helper()
	return testenv.Require(t, "DATABASE_URL", "PostgreSQL")
}

// Schema returns DATABASE_URL and a fresh schema name, dropped when the test ends. The caller
// creates the schema (pgdb.Open does).
func Schema(t testing.TB) (url, schema string) {
	t.Helper()
	url = URL(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema = "test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
		}
	})
	return url, schema
}

// Open returns a pool on a fresh schema with migrations applied, closed when the test ends.
func Open(t testing.TB, migrations fs.FS) *pgxpool.Pool {
	t.Helper()
	url, schema := Schema(t)
	pool, err := pgdb.Open(context.Background(), url, schema, migrations)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// PasswordGroup is the role whose members PostgreSQL must authenticate by password on
// 127.0.0.1. Machines whose server trusts local connections add, first in pg_hba.conf,
// `host all +shopmesh_password_auth 127.0.0.1/32 scram-sha-256` (scripts/test-postgres.sh does).
const PasswordGroup = "shopmesh_password_auth"

// PasswordRole creates a login role with password in PasswordGroup that may create schemas in
// the test database, dropped with what it owns when the test ends. It returns DATABASE_URL
// without credentials, the role, and a superuser connection for changing the role. If the server
// lets the role in with a wrong password, the test is skipped, or fails under CI.
func PasswordRole(t testing.TB, password string) (serverURL, role string, admin *pgx.Conn) {
	t.Helper()
	dbURL := URL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role = "rotation_" + hex.EncodeToString(b)
	ident := pgx.Identifier{role}.Sanitize()
	for _, sql := range []string{
		`DO $$ BEGIN CREATE ROLE ` + PasswordGroup + ` NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
		`CREATE ROLE ` + ident + ` LOGIN IN ROLE ` + PasswordGroup + ` PASSWORD '` + strings.ReplaceAll(password, "'", "''") + `'`,
		`DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO %I', current_database(), '` + role + `'); END $$`,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("create role %s: %v", role, err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
		for _, sql := range []string{`DROP OWNED BY ` + ident + ` CASCADE`, `DROP ROLE ` + ident} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				t.Errorf("drop role %s: %v", role, err)
			}
		}
		admin.Close(ctx)
	})
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = nil
	serverURL = u.String()

	wrong := *u
	wrong.User = url.UserPassword(role, password+"-wrong")
	if conn, err := pgx.Connect(ctx, wrong.String()); err == nil {
		conn.Close(ctx)
		msg := "PostgreSQL at " + u.Host + " accepts role " + role + " with a wrong password, so a rotation cannot be tested; " +
			"put `host all +" + PasswordGroup + " 127.0.0.1/32 scram-sha-256` first in pg_hba.conf (scripts/test-postgres.sh)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return serverURL, role, admin
}

// Scratch is a database of a test's own, for what may not touch the shared test database
// (roles, grants on the database, REVOKE … FROM PUBLIC), and the roles the test makes for it.
// The database goes first, then the roles, when the test ends.
type Scratch struct {
	Admin  *pgx.Conn // a superuser connection to the server
	Name   string    // the database
	Suffix string    // random, for the names of what the test makes
	server string
	roles  []string
}

// NewScratch names a database prefix_<suffix> (Create makes it) and connects as the admin.
func NewScratch(t testing.TB, prefix string) *Scratch {
	t.Helper()
	server := URL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	s := &Scratch{Admin: admin, Suffix: hex.EncodeToString(b), server: server}
	s.Name = prefix + "_" + s.Suffix
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+s.Name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", s.Name, err)
		}
		for i := len(s.roles) - 1; i >= 0; i-- {
			if _, err := admin.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{s.roles[i]}.Sanitize()); err != nil {
				t.Errorf("drop role %s: %v", s.roles[i], err)
			}
		}
		admin.Close(ctx)
	})
	return s
}

// Role returns name_<suffix>, dropped when the test ends (after the database).
func (s *Scratch) Role(name string) string {
	r := name + "_" + s.Suffix
	s.roles = append(s.roles, r)
	return r
}

// Create creates the database, owned by owner (empty: the admin user).
func (s *Scratch) Create(t testing.TB, owner string) {
	t.Helper()
	sql := "CREATE DATABASE " + s.Name
	if owner != "" {
		sql += " OWNER " + pgx.Identifier{owner}.Sanitize()
	}
	if _, err := s.Admin.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}

// URL is the database's URL with user and password (none: DATABASE_URL's own).
func (s *Scratch) URL(t testing.TB, user, password string) string {
	t.Helper()
	u, err := url.Parse(s.server)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + s.Name
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}
