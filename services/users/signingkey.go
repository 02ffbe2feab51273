package users

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
)

// sharedSigningKey returns the signing key kept in the service's own schema, creating it when
// none is there yet. Replicas starting together race on the insert; ON CONFLICT makes every one
// of them read the key the first one stored, so they all sign with, and publish, the same key.
// The key never passes through deployment tooling (Pulumi state, Kubernetes Secrets).
func sharedSigningKey(ctx context.Context, pool *pgxpool.Pool) (key ed25519.PrivateKey, created bool, err error) {
	fresh, err := jwtauth.GenerateKey()
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(fresh)
	if err != nil {
		return nil, false, err
	}
	tag, err := pool.Exec(ctx, `INSERT INTO signing_keys (name, private_key) VALUES ('active', $1) ON CONFLICT (name) DO NOTHING`, der)
	if err != nil {
		return nil, false, fmt.Errorf("store signing key: %w", err)
	}
	var stored []byte
	if err := pool.QueryRow(ctx, `SELECT private_key FROM signing_keys WHERE name = 'active'`).Scan(&stored); err != nil {
		return nil, false, fmt.Errorf("read signing key: %w", err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(stored)
	if err != nil {
		return nil, false, fmt.Errorf("signing key in the database: %w", err)
	}
	k, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("signing key in the database: want Ed25519, got %T", parsed)
	}
	return k, tag.RowsAffected() == 1, nil
}
