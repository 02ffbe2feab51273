package jwtauth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

// FuzzVerify: any string a client sends as a token is either the valid token the test signed
// or refused as unauthenticated; never a panic, never another kind of error.
func FuzzVerify(f *testing.F) {
	pub, key, _ := ed25519.GenerateKey(nil)
	signer := NewSigner(key, "iss", "aud", time.Hour)
	valid, err := signer.Sign("user-1", []string{"admin"})
	if err != nil {
		f.Fatal(err)
	}
	verifier := NewVerifier(StaticKeys{KeyID(pub): pub}, "iss", "aud", time.Minute)
	for _, s := range []string{valid, "", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", valid[:len(valid)-2], valid + "x",
		"eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ.e30.AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		claims, err := verifier.Verify(context.Background(), raw)
		if err == nil {
			if raw != valid || claims.Subject != "user-1" {
				t.Fatalf("%q verified as %+v", raw, claims)
			}
			return
		}
		if !errors.Is(err, fault.ErrUnauthenticated) {
			t.Fatalf("%q: %v, want unauthenticated", raw, err)
		}
	})
}
