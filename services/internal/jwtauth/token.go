package jwtauth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

// RoleAdmin may change the catalog.
const RoleAdmin = "admin"

// Claims are the access token's claims.
type Claims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles,omitempty"`
}

// HasRole reports whether the token grants role.
func (c *Claims) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// Signer issues tokens with one private key and publishes it, with any older or newer
// verification keys, as a JWKS.
type Signer struct {
	key      ed25519.PrivateKey
	kid      string
	issuer   string
	audience string
	ttl      time.Duration
	jwks     JWKS
	now      func() time.Time
}

// NewSigner returns a signer; extra are public keys still (or already) accepted, published so
// verifiers keep working across a key rotation.
func NewSigner(key ed25519.PrivateKey, issuer, audience string, ttl time.Duration, extra ...ed25519.PublicKey) *Signer {
	pub := key.Public().(ed25519.PublicKey)
	s := &Signer{key: key, kid: KeyID(pub), issuer: issuer, audience: audience, ttl: ttl, now: time.Now}
	s.jwks.Keys = append(s.jwks.Keys, toJWK(pub))
	for _, p := range extra {
		if KeyID(p) != s.kid {
			s.jwks.Keys = append(s.jwks.Keys, toJWK(p))
		}
	}
	return s
}

// TTL is how long issued tokens stay valid.
func (s *Signer) TTL() time.Duration { return s.ttl }

// JWKS returns the published keys.
func (s *Signer) JWKS() JWKS { return s.jwks }

// Keys returns the published keys for an in-process verifier.
func (s *Signer) Keys() StaticKeys {
	keys := StaticKeys{}
	for _, k := range s.jwks.Keys {
		kid, pub, _ := fromJWK(k)
		keys[kid] = pub
	}
	return keys
}

// Sign issues a token for subject with roles.
func (s *Signer) Sign(subject string, roles []string) (string, error) {
	now := s.now().UTC()
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{s.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.ttl)),
			ID:        uuid.NewString(),
		},
		Roles: roles,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signed, nil
}

// KeySource finds a verification key by id.
type KeySource interface {
	Key(ctx context.Context, kid string) (crypto.PublicKey, error)
}

// StaticKeys is a fixed set of keys by id.
type StaticKeys map[string]crypto.PublicKey

// Key returns the key with id kid.
func (s StaticKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// ErrUnknownKey means no published key has the token's kid.
var ErrUnknownKey = errors.New("token signed with an unknown key")

// Verifier checks tokens: EdDSA only, known key, issuer, audience, exp/nbf with leeway.
type Verifier struct {
	keys     KeySource
	issuer   string
	audience string
	leeway   time.Duration
}

// NewVerifier returns a verifier of tokens from issuer for audience.
func NewVerifier(keys KeySource, issuer, audience string, leeway time.Duration) *Verifier {
	return &Verifier{keys: keys, issuer: issuer, audience: audience, leeway: leeway}
}

// Verify returns the claims of a valid token, or a fault.ErrUnauthenticated (or, when keys
// cannot be fetched, fault.ErrUnavailable) that says what is wrong.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	var keyErr error
	claims := &Claims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			keyErr = errors.New("token has no kid header")
			return nil, keyErr
		}
		k, err := v.keys.Key(ctx, kid)
		keyErr = err
		return k, err
	},
		// The allow-list stops alg=none and HMAC-with-the-public-key forgeries.
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience),
		jwt.WithLeeway(v.leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	if err == nil {
		if claims.Subject == "" {
			return nil, fault.New(fault.ErrUnauthenticated, "token has no subject")
		}
		return claims, nil
	}
	switch {
	case keyErr != nil && errors.Is(keyErr, fault.ErrUnavailable):
		return nil, keyErr
	case keyErr != nil:
		return nil, fault.New(fault.ErrUnauthenticated, keyErr.Error())
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fault.New(fault.ErrUnauthenticated, "token has expired; log in again")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return nil, fault.New(fault.ErrUnauthenticated, "token is not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return nil, fault.New(fault.ErrUnauthenticated, "token was not issued by "+v.issuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return nil, fault.New(fault.ErrUnauthenticated, "token is not meant for audience "+v.audience)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, fault.New(fault.ErrUnauthenticated, "token signature is invalid or its algorithm is not EdDSA")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, fault.New(fault.ErrUnauthenticated, "token is malformed")
	}
	return nil, fault.New(fault.ErrUnauthenticated, "token is invalid")
}
