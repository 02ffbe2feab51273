// Package dbbootstrap gives each data service a database login of its own (pgdb.Bootstrap),
// logging in as the RDS master user whose password RDS keeps in Secrets Manager, and stores
// each login's password in that service's own secret, which the service then reads as it reads
// any (package dbsecret). A login whose secret already holds a password keeps it: running the
// bootstrap again changes nothing.
package dbbootstrap

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/jackc/pgx/v5"

	"github.com/shopmesh/shopmesh/services/internal/dbsecret"
	"github.com/shopmesh/shopmesh/services/internal/envconf"
	"github.com/shopmesh/shopmesh/services/internal/pgdb"
)

// Config is the bootstrap's environment.
type Config struct {
	DatabaseURL string            // DATABASE_URL: the server and database, without credentials
	MasterARN   string            // DATABASE_SECRET_ARN: the master user's secret
	Logins      map[string]string // DATABASE_LOGINS: schema=secret ARN, comma-separated
	Region      string            // AWS_REGION
	Endpoint    string            // AWS_ENDPOINT_URL_SECRETS_MANAGER
}

// RolePrefix names the logins: shopmesh_<schema>.
const RolePrefix = "shopmesh_"

// LoadConfig reads and checks the environment.
func LoadConfig(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{
		DatabaseURL: r.String("DATABASE_URL", ""), MasterARN: r.String("DATABASE_SECRET_ARN", ""),
		Region: r.String("AWS_REGION", ""), Endpoint: r.String("AWS_ENDPOINT_URL_SECRETS_MANAGER", ""), Logins: map[string]string{},
	}
	if c.DatabaseURL == "" {
		r.Fail("DATABASE_URL", "is required: the server and database to bootstrap, as in postgres://host:5432/shopmesh?sslmode=require")
	} else if u, err := url.Parse(c.DatabaseURL); err != nil || u.User != nil {
		r.Fail("DATABASE_URL", "must name the server without a user or password (they come from DATABASE_SECRET_ARN)")
	}
	if c.MasterARN == "" {
		r.Fail("DATABASE_SECRET_ARN", "is required: the master user's secret")
	}
	for _, pair := range r.List("DATABASE_LOGINS") {
		schema, arn, ok := strings.Cut(pair, "=")
		if !ok || schema == "" || arn == "" {
			r.Fail("DATABASE_LOGINS", "must list schema=secret-arn pairs, got %q", pair)
			continue
		}
		c.Logins[schema] = arn
	}
	if len(c.Logins) == 0 {
		r.Fail("DATABASE_LOGINS", "is required: schema=secret-arn for each service, comma-separated")
	}
	return c, r.Err()
}

// Secrets is what the bootstrap asks of Secrets Manager.
type Secrets interface {
	dbsecret.Getter
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
}

// Run bootstraps the logins DATABASE_LOGINS names and says what it did (no password).
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	client, err := dbsecret.NewClient(ctx, dbsecret.Options{Region: cfg.Region, Endpoint: cfg.Endpoint})
	if err != nil {
		return err
	}
	return Bootstrap(ctx, cfg, client, stdout)
}

// Bootstrap is Run with its configuration and client given.
func Bootstrap(ctx context.Context, cfg Config, client Secrets, stdout io.Writer) error {
	user, password, err := dbsecret.NewWithClient(client, cfg.MasterARN).Credentials(ctx)
	if err != nil {
		return err
	}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	u.User = url.UserPassword(user, password)
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect as the master user: %w", err)
	}
	defer conn.Close(ctx)

	schemas := make([]string, 0, len(cfg.Logins))
	for s := range cfg.Logins {
		schemas = append(schemas, s)
	}
	sort.Strings(schemas)
	var logins []pgdb.Login
	for _, schema := range schemas {
		login, kept, err := secretLogin(ctx, client, cfg.Logins[schema], RolePrefix+schema)
		if err != nil {
			return err
		}
		login.Schema = schema
		logins = append(logins, login)
		state := "new password stored"
		if kept {
			state = "password kept"
		}
		fmt.Fprintf(stdout, "login %s for schema %s (%s in %s)\n", login.Role, schema, state, cfg.Logins[schema])
	}
	return pgdb.Bootstrap(ctx, conn, logins)
}

// secretLogin is the login the secret holds, or a new one stored there first: a later run then
// finds it, whatever step failed.
func secretLogin(ctx context.Context, client Secrets, arn, role string) (pgdb.Login, bool, error) {
	out, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	var notFound *types.ResourceNotFoundException
	switch {
	case err == nil && out.SecretString != nil:
		var v struct{ Username, Password string }
		if err := json.Unmarshal([]byte(*out.SecretString), &v); err != nil || v.Password == "" || v.Username != role {
			return pgdb.Login{}, false, fmt.Errorf("secret %s holds no password of login %s; delete its value or fix it", arn, role)
		}
		return pgdb.Login{Role: role, Password: v.Password}, true, nil
	case err != nil && !errors.As(err, &notFound):
		return pgdb.Login{}, false, fmt.Errorf("read secret %s: %w", arn, err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return pgdb.Login{}, false, err
	}
	password := base64.RawURLEncoding.EncodeToString(b)
	value, _ := json.Marshal(map[string]string{"username": role, "password": password})
	if _, err := client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(arn), SecretString: aws.String(string(value))}); err != nil {
		return pgdb.Login{}, false, fmt.Errorf("store the password of %s in %s: %w", role, arn, err)
	}
	return pgdb.Login{Role: role, Password: password}, false, nil
}
