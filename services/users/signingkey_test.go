package users

import (
	"context"
	"crypto/ed25519"
	"sync"
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/pgdb/pgtest"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// TestReplicasShareTheSigningKeyThroughTheDatabase: without a key file, replicas on one
// database sign with one key (a token from one is accepted by another), and a restarted
// replica keeps it.
func TestReplicasShareTheSigningKeyThroughTheDatabase(t *testing.T) {
	url, schema := pgtest.Schema(t)
	env := map[string]string{"DATABASE_URL": url, "DATABASE_SCHEMA": schema}

	bases := []string{webtest.Start(t, env, LoadConfig, NewServer).URL, webtest.Start(t, env, LoadConfig, NewServer).URL}

	kids := map[string]bool{}
	for _, base := range bases {
		var jwks struct{ Keys []struct{ Kid string } }
		webtest.Do(t, "GET", base+"/.well-known/jwks.json", nil).Decode(t, &jwks)
		if len(jwks.Keys) != 1 {
			t.Fatalf("%s publishes %d keys, want 1", base, len(jwks.Keys))
		}
		kids[jwks.Keys[0].Kid] = true
	}
	if len(kids) != 1 {
		t.Fatalf("replicas publish different keys %v", kids)
	}

	register(t, bases[0], "ada@example.com", "correct-horse")
	tok := login(t, bases[1], "ada@example.com", "correct-horse")
	later := webtest.Start(t, env, LoadConfig, NewServer).URL // a replica started after the others
	for _, base := range append(bases, later) {
		if r := webtest.Do(t, "GET", base+"/users/me", nil, webtest.Bearer(tok)...); r.Status != 200 {
			t.Errorf("%s refused a token another replica signed: %d %s", base, r.Status, r.Body)
		}
	}
}

// TestSharedSigningKeyRace: replicas that start together race to store the key; exactly one
// stores it and all of them end up with it.
func TestSharedSigningKeyRace(t *testing.T) {
	pool := pgtest.Open(t, Migrations())
	const replicas = 8
	keys := make([]ed25519.PrivateKey, replicas)
	created := make([]bool, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], created[i], errs[i] = sharedSigningKey(context.Background(), pool)
		}()
	}
	wg.Wait()
	stored := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if !keys[i].Equal(keys[0]) {
			t.Errorf("replica %d got another key", i)
		}
		if created[i] {
			stored++
		}
	}
	if stored != 1 {
		t.Errorf("%d replicas stored a key, want exactly 1", stored)
	}
}
