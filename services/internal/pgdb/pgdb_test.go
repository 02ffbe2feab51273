package pgdb_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/multitracer"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
	"github.com/shopmesh/shopmesh/services/internal/pgdb"
	"github.com/shopmesh/shopmesh/services/internal/pgdb/pgtest"
)

func files(m map[string]string) fstest.MapFS {
	fs := fstest.MapFS{}
	for name, sql := range m {
		fs[name] = &fstest.MapFile{Data: []byte(sql)}
	}
	return fs
}

func TestMigrationsApplyOnceInOrder(t *testing.T) {
	url, schema := pgtest.Schema(t)
	ctx := context.Background()
	v1 := files(map[string]string{
		"002_add.sql":  `INSERT INTO things (name) VALUES ('second')`,
		"001_init.sql": `CREATE TABLE things (name text NOT NULL)`,
	})
	// Several replicas starting at once: the advisory lock lets one migrate at a time.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool, err := pgdb.Open(ctx, url, schema, v1)
			if err == nil {
				pool.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}

	v2 := files(map[string]string{
		"001_init.sql": `CREATE TABLE things (name text NOT NULL)`,
		"002_add.sql":  `INSERT INTO things (name) VALUES ('second')`,
		"003_more.sql": `INSERT INTO things (name) VALUES ('third')`,
	})
	pool, err := pgdb.Open(ctx, url, schema, v2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var names string
	if err := pool.QueryRow(ctx, `SELECT string_agg(name, ',' ORDER BY name) FROM things`).Scan(&names); err != nil {
		t.Fatal(err)
	}
	if names != "second,third" {
		t.Errorf("rows = %q, want each migration applied once: second,third", names)
	}
	var versions int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&versions); err != nil || versions != 3 {
		t.Errorf("schema_migrations holds %d versions (%v), want 3", versions, err)
	}
}

func TestMigrationErrors(t *testing.T) {
	url, schema := pgtest.Schema(t)
	tests := []struct {
		name   string
		schema string
		fs     fstest.MapFS
		want   string
	}{
		{"no migrations", schema, files(nil), "no migrations"},
		{"unnumbered", schema, files(map[string]string{"init.sql": "SELECT 1"}), "positive version"},
		{"duplicate version", schema, files(map[string]string{"001_a.sql": "SELECT 1", "001_b.sql": "SELECT 1"}), "share version"},
		{"bad SQL names the file", schema, files(map[string]string{"001_bad.sql": "CREATE TABLEX"}), "001_bad.sql"},
		{"bad schema name", "Users; DROP", files(map[string]string{"001_a.sql": "SELECT 1"}), "lower-case"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := pgdb.Open(context.Background(), url, tt.schema, tt.fs)
			if err == nil {
				pool.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestUnreachableServerIsAClearError(t *testing.T) {
	pgtest.URL(t) // only where PostgreSQL tests run at all
	_, err := pgdb.Open(context.Background(), "postgres://postgres@127.0.0.1:1/none?connect_timeout=2", "x", files(map[string]string{"001_a.sql": "SELECT 1"}))
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Open(unreachable) = %v; want an error naming the server", err)
	}
}

func TestReadConfigSecret(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // part of the error; empty for none
	}{
		{"url only", map[string]string{"DATABASE_URL": "postgres://u:p@db:5432/shop"}, ""},
		{"secret names the credentials", map[string]string{"DATABASE_URL": "postgres://db:5432/shop", "DATABASE_SECRET_ARN": "arn:x"}, ""},
		{"secret without url", map[string]string{"DATABASE_SECRET_ARN": "arn:x"}, "needs DATABASE_URL"},
		{"secret and a password in the url", map[string]string{"DATABASE_URL": "postgres://u:p@db:5432/shop", "DATABASE_SECRET_ARN": "arn:x"}, "must not carry a user or password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := envconf.New(func(k string) string { return tt.env[k] })
			cfg := pgdb.ReadConfig(r, "svc")
			err := r.Err()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if cfg.SecretARN != tt.env["DATABASE_SECRET_ARN"] {
				t.Errorf("SecretARN = %q", cfg.SecretARN)
			}
		})
	}
}

// staticCreds hands out the URL's own user.
type staticCreds struct{ user string }

func (c *staticCreds) Credentials(context.Context) (string, string, error) { return c.user, "", nil }
func (c *staticCreds) Invalidate()                                         {}

// TestQueriesAreTraced: with WithTracing, each query is a client span under the caller's span,
// and WithCredentials still works beside it (pgx takes one tracer; both go through multitracer).
func TestQueriesAreTraced(t *testing.T) {
	url, schema := pgtest.Schema(t)
	ctx := context.Background()
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	creds := &staticCreds{user: "postgres"}
	pool, err := pgdb.Open(ctx, url, schema, files(map[string]string{"001_init.sql": `CREATE TABLE things (name text)`}),
		pgdb.WithCredentials(creds), pgdb.WithTracing(tp))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, parent := tp.Tracer("test").Start(ctx, "handler")
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM things WHERE name = $1`, "x").Scan(&n); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var query sdktrace.ReadOnlySpan
	for _, s := range recorder.Ended() {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() && strings.Contains(s.Name(), "SELECT") {
			query = s
		}
	}
	if query == nil {
		t.Fatalf("no query span under the handler's span; spans: %d", len(recorder.Ended()))
	}
	// Both tracers are on the connections: the credentials' (refused logins) and the spans'.
	mt, ok := pool.Config().ConnConfig.Tracer.(*multitracer.Tracer)
	if !ok || len(mt.QueryTracers) != 2 || len(mt.ConnectTracers) != 2 {
		t.Errorf("connection tracer %T %+v: want the credentials' tracer and the spans' both", pool.Config().ConnConfig.Tracer, mt)
	}
}

func TestPoolMetrics(t *testing.T) {
	url, schema := pgtest.Schema(t)
	reg := prometheus.NewRegistry()
	pool, err := pgdb.Open(context.Background(), url, schema, files(map[string]string{"001_init.sql": `SELECT 1`}), pgdb.WithPoolMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.Metric {
			name := f.GetName()
			for _, l := range m.Label {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if got["db_pool_acquires_total"] < 1 || got["db_pool_max_connections"] != float64(pool.Stat().MaxConns()) || got["db_pool_connections/idle"] < 1 {
		t.Errorf("pool metrics %v: want acquisitions counted, the maximum, and the idle connection", got)
	}
}
