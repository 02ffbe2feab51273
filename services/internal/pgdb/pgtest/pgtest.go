// Package pgtest gives tests a PostgreSQL schema of their own on the server DATABASE_URL names.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
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
