package dbbootstrap_test

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shopmesh/shopmesh/services/internal/dbbootstrap"
	"github.com/shopmesh/shopmesh/services/internal/dbsecret/dbsecrettest"
	"github.com/shopmesh/shopmesh/services/internal/pgdb/pgtest"
	"github.com/shopmesh/shopmesh/services/users"
)

// TestBootstrapCommand runs `users bootstrap-db` as the deploy's Job does: as a master user
// (a login that owns the database and may create roles, as RDS's does) read from its secret,
// it makes a login per schema and stores each password in that schema's secret; each login then
// opens. A second run keeps the passwords.
func TestBootstrapCommand(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewScratch(t, "dbboot")
	master := db.Role("dbboot_master")
	schemas := []string{"alpha_" + db.Suffix, "beta_" + db.Suffix}
	for _, schema := range schemas {
		// The login the bootstrap makes, shopmesh_<schema>, is dropped with the rest.
		db.Role(dbbootstrap.RolePrefix + strings.TrimSuffix(schema, "_"+db.Suffix))
	}
	if _, err := db.Admin.Exec(ctx, `CREATE ROLE `+master+` LOGIN CREATEROLE IN ROLE `+pgtest.PasswordGroup+` PASSWORD 'master-password'`); err != nil {
		t.Fatal(err)
	}
	db.Create(t, master)
	dbsecrettest.SetCredentials(t)
	sm := dbsecrettest.StartSecretsManager(t, master, "master-password")
	u, err := url.Parse(db.URL(t, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	u.User = nil
	env := sm.Env()
	env["DATABASE_URL"] = u.String()
	var pairs []string
	for _, s := range schemas {
		arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shopmesh-test-db-" + s
		sm.AddSecret(arn)
		pairs = append(pairs, s+"="+arn)
	}
	env["DATABASE_LOGINS"] = strings.Join(pairs, ",")
	run := func() string {
		var out bytes.Buffer
		if err := users.Run(ctx, []string{"users", "bootstrap-db"}, func(k string) string { return env[k] }, &out); err != nil {
			t.Fatalf("users bootstrap-db: %v\n%s", err, out.String())
		}
		return out.String()
	}
	if out := run(); strings.Count(out, "new password stored") != 2 {
		t.Errorf("first run:\n%s\nwant two new logins", out)
	}
	passwords := map[string]string{}
	for i, s := range schemas {
		arn := strings.SplitN(pairs[i], "=", 2)[1]
		user, password, ok := sm.Value(arn)
		if !ok || user != dbbootstrap.RolePrefix+s || len(password) < 24 {
			t.Fatalf("secret of %s holds %q, %d characters, %v", s, user, len(password), ok)
		}
		passwords[s] = password
		login := *u
		login.User = url.UserPassword(user, password)
		c, err := pgx.Connect(ctx, login.String())
		if err != nil {
			t.Fatalf("log in as %s with the stored password: %v", user, err)
		}
		if _, err := c.Exec(ctx, "CREATE TABLE "+s+".t (x int)"); err != nil {
			t.Errorf("%s creates in its schema: %v", user, err)
		}
		c.Close(ctx)
	}
	if out := run(); strings.Count(out, "password kept") != 2 {
		t.Errorf("second run:\n%s\nwant both passwords kept", out)
	}
	for i, s := range schemas {
		if _, password, _ := sm.Value(strings.SplitN(pairs[i], "=", 2)[1]); password != passwords[s] {
			t.Errorf("the second run changed %s's password", s)
		}
	}
}

func TestBootstrapConfig(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"DATABASE_SECRET_ARN": "arn:x", "DATABASE_LOGINS": "users=arn:y"}, "DATABASE_URL"},
		{map[string]string{"DATABASE_URL": "postgres://u:p@db/shop", "DATABASE_SECRET_ARN": "arn:x", "DATABASE_LOGINS": "users=arn:y"}, "without a user or password"},
		{map[string]string{"DATABASE_URL": "postgres://db/shop", "DATABASE_LOGINS": "users=arn:y"}, "DATABASE_SECRET_ARN"},
		{map[string]string{"DATABASE_URL": "postgres://db/shop", "DATABASE_SECRET_ARN": "arn:x", "DATABASE_LOGINS": "users"}, "schema=secret-arn"},
		{map[string]string{"DATABASE_URL": "postgres://db/shop", "DATABASE_SECRET_ARN": "arn:x"}, "DATABASE_LOGINS"},
	} {
		_, err := dbbootstrap.LoadConfig(func(k string) string { return tt.env[k] })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want an error naming %q", tt.env, err, tt.want)
		}
	}
}
