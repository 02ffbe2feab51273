package pgdb_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shopmesh/shopmesh/services/internal/pgdb"
	"github.com/shopmesh/shopmesh/services/internal/pgdb/pgtest"
)

// TestBootstrapConfinesEachLoginToItsSchema runs Bootstrap on a database of its own, as its
// owner, over data the owner wrote before (as the services did when they used the master user),
// then logs in as each service: each reads and migrates its own schema, keeps the data already
// there, and is refused the other's schema and the public one.
func TestBootstrapConfinesEachLoginToItsSchema(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewScratch(t, "bootstrap")
	admin := db.Admin
	users, products := db.Role("boot_users"), db.Role("boot_products")
	db.Create(t, "")
	at := func(user, password string) string { return db.URL(t, user, password) }
	owner, err := pgx.Connect(ctx, at("", ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close(context.Background()) })
	for _, sql := range []string{`CREATE SCHEMA users`, `CREATE TABLE users.accounts (email text PRIMARY KEY, hash text)`,
		`INSERT INTO users.accounts VALUES ('ada@example.com', 'secret-hash')`} {
		if _, err := owner.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	logins := []pgdb.Login{{Role: users, Schema: "users", Password: "users-1"}, {Role: products, Schema: "products", Password: "products-1"}}
	if err := pgdb.Bootstrap(ctx, owner, logins); err != nil {
		t.Fatal(err)
	}
	var memberships int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
		WHERE r.rolname IN ($1, $2) AND m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)`, users, products).Scan(&memberships); err != nil || memberships != 0 {
		t.Errorf("the owner is a member of %d service roles (%v): it would act as them without logging in", memberships, err)
	}
	// Where the server trusts local connections, only this group's passwords are checked.
	for _, l := range logins {
		if _, err := admin.Exec(ctx, "GRANT "+pgtest.PasswordGroup+" TO "+l.Role); err != nil {
			t.Fatal(err)
		}
	}
	as := func(role, password string) *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, at(role, password))
		if err != nil {
			t.Fatalf("log in as %s: %v", role, err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	u := as(users, "users-1")
	var hash string
	if err := u.QueryRow(ctx, `SELECT hash FROM users.accounts`).Scan(&hash); err != nil || hash != "secret-hash" {
		t.Errorf("users reads its own table: %q, %v", hash, err)
	}
	p := as(products, "products-1")
	if _, err := p.Exec(ctx, `CREATE TABLE products.items (id int)`); err != nil {
		t.Errorf("products creates in its schema: %v", err)
	}
	for _, tt := range []struct {
		conn *pgx.Conn
		who  string
		sql  string
	}{
		{p, "products", `SELECT hash FROM users.accounts`},
		{u, "users", `SELECT id FROM products.items`},
		{u, "users", `CREATE TABLE public.loot (x int)`},
		{u, "users", `CREATE SCHEMA extra`},
		{u, "users", `ALTER ROLE ` + products + ` PASSWORD 'mine'`},
	} {
		if _, err := tt.conn.Exec(ctx, tt.sql); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s: %s: %v, want permission denied", tt.who, tt.sql, err)
		}
	}
	// The service's own migrations run as its login, over what is there.
	pool, err := pgdb.Open(ctx, at(users, "users-1"), "users", files(map[string]string{
		"001_accounts.sql": `CREATE TABLE IF NOT EXISTS accounts (email text PRIMARY KEY, hash text)`,
		"002_names.sql":    `ALTER TABLE accounts ADD COLUMN name text NOT NULL DEFAULT ''`,
	}))
	if err != nil {
		t.Fatalf("migrations as the users login: %v", err)
	}
	pool.Close()

	// Again, with a new password: the same state, and only the new password opens.
	logins[0].Password = "users-2"
	if err := pgdb.Bootstrap(ctx, owner, logins); err != nil {
		t.Fatalf("bootstrap again: %v", err)
	}
	as(users, "users-2")
	if c, err := pgx.Connect(ctx, at(users, "users-1")); err == nil {
		c.Close(ctx)
		t.Log("the old password still opens: this server does not check passwords for " + pgtest.PasswordGroup + " (scripts/test-postgres.sh)")
	}
}
