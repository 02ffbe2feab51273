package users

import (
	"crypto/ed25519"
	"os"
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
)

type ed25519PublicKey = ed25519.PublicKey

func writeKeys(t *testing.T, privPath string, priv ed25519.PrivateKey, pubPath string, other ed25519.PrivateKey) {
	t.Helper()
	p, err := jwtauth.EncodePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	q, err := jwtauth.EncodePublicKey(other.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(privPath, p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, q, 0o644); err != nil {
		t.Fatal(err)
	}
}
