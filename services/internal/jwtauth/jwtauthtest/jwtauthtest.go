// Package jwtauthtest stands in for the users service in tests: it signs tokens and serves
// their JWKS on loopback.
package jwtauthtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
)

// Issuer and Audience are the defaults the services' configuration uses.
const (
	Issuer   = "shopmesh-users"
	Audience = "shopmesh"
)

// TokenIssuer signs test tokens.
type TokenIssuer struct {
	Signer  *jwtauth.Signer
	JWKSURL string
}

// Start serves a fresh key's JWKS until the test ends.
func Start(t testing.TB) *TokenIssuer {
	t.Helper()
	key, err := jwtauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer := jwtauth.NewSigner(key, Issuer, Audience, time.Hour)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(signer.JWKS())
	}))
	t.Cleanup(ts.Close)
	return &TokenIssuer{Signer: signer, JWKSURL: ts.URL}
}

// Token returns a token for subject with roles.
func (i *TokenIssuer) Token(t testing.TB, subject string, roles ...string) string {
	t.Helper()
	tok, err := i.Signer.Sign(subject, roles)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
