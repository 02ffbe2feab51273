package jwtauth

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

const (
	iss = "shopmesh-users"
	aud = "shopmesh"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signWith signs claims with method and key, setting kid.
func signWith(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(mod func(*Claims)) *Claims {
	now := time.Now()
	c := &Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: iss, Subject: "user-1", Audience: jwt.ClaimStrings{aud},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))}}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestVerifyRejectsEveryBadToken(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	kid := KeyID(pub)
	signer := NewSigner(key, iss, aud, time.Minute)
	v := NewVerifier(signer.Keys(), iss, aud, 5*time.Second)
	good, err := signer.Sign("user-1", []string{"admin"})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	hour := time.Hour

	tests := []struct {
		name  string
		token string
		want  string // fragment of the error message; empty means valid
	}{
		{"valid", good, ""},
		{"alg none", signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, claims(nil)), "algorithm"},
		{"HMAC keyed with the public key", signWith(t, jwt.SigningMethodHS256, []byte(pub), kid, claims(nil)), "algorithm"},
		{"bad signature", tampered, "signature"},
		{"expired", signWith(t, jwt.SigningMethodEdDSA, key, kid, claims(func(c *Claims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-hour))
		})), "expired"},
		{"not yet valid", signWith(t, jwt.SigningMethodEdDSA, key, kid, claims(func(c *Claims) {
			c.NotBefore = jwt.NewNumericDate(time.Now().Add(hour))
		})), "not valid yet"},
		{"no expiry", signWith(t, jwt.SigningMethodEdDSA, key, kid, claims(func(c *Claims) { c.ExpiresAt = nil })), "invalid"},
		{"wrong issuer", signWith(t, jwt.SigningMethodEdDSA, key, kid, claims(func(c *Claims) { c.Issuer = "evil" })), "issued by"},
		{"wrong audience", signWith(t, jwt.SigningMethodEdDSA, key, kid, claims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"other"} })), "audience"},
		{"unknown key", signWith(t, jwt.SigningMethodEdDSA, newKey(t), KeyID(newKey(t).Public().(ed25519.PublicKey)), claims(nil)), "unknown key"},
		{"no kid", signWith(t, jwt.SigningMethodEdDSA, key, "", claims(nil)), "kid"},
		{"no subject", signWith(t, jwt.SigningMethodEdDSA, key, kid, claims(func(c *Claims) { c.Subject = "" })), "subject"},
		{"garbage", "not.a.token", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil || got.Subject != "user-1" || !got.HasRole("admin") {
					t.Fatalf("Verify(valid) = %+v, %v", got, err)
				}
				return
			}
			if !errors.Is(err, fault.ErrUnauthenticated) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify = %v; want unauthenticated mentioning %q", err, tt.want)
			}
		})
	}
}

func TestKeyIDIsTheRFC7638Thumbprint(t *testing.T) {
	// RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
	raw, _ := json.Marshal(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
	var k JWK
	_ = json.Unmarshal(raw, &k)
	_, pub, err := fromJWK(k)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := KeyID(pub.(ed25519.PublicKey)), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("KeyID = %s, want %s", got, want)
	}
}

// jwksServer serves the current key set and counts fetches.
type jwksServer struct {
	set     atomic.Value // JWKS
	fetches atomic.Int32
	down    atomic.Bool
	srv     *httptest.Server
}

func newJWKSServer(t *testing.T, set JWKS) *jwksServer {
	j := &jwksServer{}
	j.set.Store(set)
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		if j.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(j.set.Load())
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func TestRemoteJWKS(t *testing.T) {
	ctx := context.Background()
	old := NewSigner(newKey(t), iss, aud, time.Minute)
	next := NewSigner(newKey(t), iss, aud, time.Minute)
	j := newJWKSServer(t, old.JWKS())
	clock := time.Now()
	remote := NewRemoteJWKS(j.srv.URL, j.srv.Client(), 10*time.Second, 15*time.Minute)
	remote.now = func() time.Time { return clock }
	v := NewVerifier(remote, iss, aud, 0)

	tokOld, _ := old.Sign("u", nil)
	tokNext, _ := next.Sign("u", nil)
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(ctx, tokOld); err != nil {
			t.Fatal(err)
		}
	}
	if n := j.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for 3 verifications with one key, want 1 (cached)", n)
	}

	// The issuer rotates: the new kid is unknown, but a refetch is not due yet.
	j.set.Store(next.JWKS())
	if _, err := v.Verify(ctx, tokNext); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("unknown kid within the refetch interval = %v, want unauthenticated", err)
	}
	if n := j.fetches.Load(); n != 1 {
		t.Errorf("%d fetches: an unknown kid refetched before minRefresh", n)
	}
	clock = clock.Add(11 * time.Second)
	if _, err := v.Verify(ctx, tokNext); err != nil {
		t.Errorf("rotated key after minRefresh: %v", err)
	}
	// Forged kids cannot turn every request into a fetch.
	forged := NewSigner(newKey(t), iss, aud, time.Minute)
	for i := 0; i < 5; i++ {
		tok, _ := forged.Sign("u", nil)
		_, _ = v.Verify(ctx, tok)
	}
	if n := j.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after 5 forged kids, want 2", n)
	}

	// The issuer goes down: cached keys keep working after maxAge.
	j.down.Store(true)
	clock = clock.Add(time.Hour)
	if _, err := v.Verify(ctx, tokNext); err != nil {
		t.Errorf("cached key while the issuer is down: %v", err)
	}
}

func TestRemoteJWKSUnreachableIsUnavailable(t *testing.T) {
	j := newJWKSServer(t, JWKS{})
	j.down.Store(true)
	v := NewVerifier(NewRemoteJWKS(j.srv.URL, j.srv.Client(), time.Second, time.Minute), iss, aud, 0)
	tok, _ := NewSigner(newKey(t), iss, aud, time.Minute).Sign("u", nil)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, fault.ErrUnavailable) {
		t.Errorf("Verify with no reachable keys = %v, want unavailable (503, not 401)", err)
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{"Bearer abc": "abc", "bearer abc": "abc", "Bearer  abc ": "abc"} {
		if got, err := BearerToken(header); err != nil || got != want {
			t.Errorf("BearerToken(%q) = %q, %v", header, got, err)
		}
	}
	for _, header := range []string{"", "Basic abc", "Bearer", "Bearer   "} {
		if _, err := BearerToken(header); !errors.Is(err, fault.ErrUnauthenticated) {
			t.Errorf("BearerToken(%q) = %v, want unauthenticated", header, err)
		}
	}
}
