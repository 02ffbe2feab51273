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
