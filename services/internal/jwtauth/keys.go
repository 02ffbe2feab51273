// Package jwtauth issues and verifies the platform's access tokens: EdDSA (Ed25519) JWTs whose
// public keys are published as a JWKS, so every service verifies tokens without a shared secret.
package jwtauth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// JWK is one public key in a JWKS, as RFC 8037 writes Ed25519 keys.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS is the document served at /.well-known/jwks.json.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// KeyID is the RFC 7638 thumbprint of an Ed25519 public key, so the same key always has the
// same id wherever it is loaded.
func KeyID(pub ed25519.PublicKey) string {
	x := base64.RawURLEncoding.EncodeToString(pub)
	// Members in lexicographic order, no white space, as RFC 7638 requires.
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func toJWK(pub ed25519.PublicKey) JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub),
		Kid: KeyID(pub), Use: "sig", Alg: "EdDSA"}
}

func fromJWK(k JWK) (string, crypto.PublicKey, error) {
	if k.Kty != "OKP" || k.Crv != "Ed25519" {
		return "", nil, fmt.Errorf("key %q: unsupported kty/crv %s/%s", k.Kid, k.Kty, k.Crv)
	}
	raw, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return "", nil, fmt.Errorf("key %q: x is not a base64url Ed25519 public key", k.Kid)
	}
	kid := k.Kid
	if kid == "" {
		kid = KeyID(raw)
	}
	return kid, ed25519.PublicKey(raw), nil
}

// GenerateKey returns a new Ed25519 private key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// LoadPrivateKey reads a PEM "PRIVATE KEY" (PKCS #8) Ed25519 key, as
// `openssl genpkey -algorithm ed25519` writes it.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	block, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: want an Ed25519 key, got %T", path, key)
	}
	return priv, nil
}

// LoadPublicKey reads a PEM "PUBLIC KEY" (PKIX) Ed25519 key.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	block, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: want an Ed25519 key, got %T", path, key)
	}
	return pub, nil
}

// EncodePrivateKey and EncodePublicKey write keys in the PEM forms the loaders read.
func EncodePrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func readPEM(path, typ string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block found", path)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("%s: PEM block is %q, want %q", path, block.Type, typ)
	}
	return block, nil
}

// ParseJWKS decodes a JWKS document into keys by id.
func ParseJWKS(data []byte) (map[string]crypto.PublicKey, error) {
	var set JWKS
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	keys := make(map[string]crypto.PublicKey, len(set.Keys))
	var errs []error
	for _, k := range set.Keys {
		kid, pub, err := fromJWK(k)
		if err != nil {
			errs = append(errs, err) // skip keys we cannot use, as RFC 7517 §5 allows
			continue
		}
		keys[kid] = pub
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS holds no usable Ed25519 key: %w", errors.Join(errs...))
	}
	return keys, nil
}
