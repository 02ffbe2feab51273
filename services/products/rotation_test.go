package products

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/dbsecret/dbsecrettest"
	"github.com/shopmesh/shopmesh/services/internal/pgdb/pgtest"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// TestPasswordRotationWhileRunning rotates the database password the way Secrets Manager rotates
// an RDS-managed secret (AWSPENDING, ALTER ROLE, then AWSCURRENT) under a running service whose
// connections must then be re-opened: new connections pick up the new password, with no restart.
func TestPasswordRotationWhileRunning(t *testing.T) {
	serverURL, role, admin := pgtest.PasswordRole(t, "first-password")
	sm := dbsecrettest.StartSecretsManager(t, role, "first-password")
	dbsecrettest.SetCredentials(t)
	env := sm.Env()
	env["DATABASE_URL"], env["DATABASE_SCHEMA"] = serverURL, role
	f := start(t, env)
	p := f.create(t, "Teapot", 3)
	get := func() int { return webtest.Do(t, "GET", f.base+"/products/"+p.ID.String(), nil).Status }
	ctx := context.Background()
	// Dropping the role's sessions stands in for the pool opening new connections (lifetime, growth).
	reconnect := func() {
		t.Helper()
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // pgxpool pings connections idle for over a second before use
	}
	// served counts 200s among n requests, and requires the last to be a 200.
	served := func(when string, n int) int {
		t.Helper()
		ok, last := 0, 0
		for range n {
			if last = get(); last == http.StatusOK {
				ok++
			}
		}
		if last != http.StatusOK {
			t.Fatalf("%s: last GET answered %d, want 200", when, last)
		}
		return ok
	}

	// Rotation starts: the pending password is stored and set on the database.
	sm.BeginRotation("second-password")
	if _, err := admin.Exec(ctx, `ALTER ROLE `+role+` PASSWORD 'second-password'`); err != nil {
		t.Fatal(err)
	}
	if ok := served("open connections after ALTER ROLE", 3); ok != 3 {
		t.Errorf("open connections after ALTER ROLE: %d of 3 GETs served, want 3", ok)
	}
	reconnect()
	// The first new connection uses the cached password and is refused; the next one reads the secret again.
	if ok := served("new connections mid-rotation", 4); ok < 3 {
		t.Errorf("new connections mid-rotation: %d of 4 GETs served, want at least 3", ok)
	}

	sm.FinishRotation()
	reconnect()
	if ok := served("new connections after rotation", 3); ok != 3 {
		t.Errorf("new connections after rotation: %d of 3 GETs served, want 3", ok)
	}
	if n := sm.Calls.Load(); n > 8 {
		t.Errorf("GetSecretValue calls = %d: the secret is read far more than once per refused or stale connection", n)
	}
}
