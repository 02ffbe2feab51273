package jwtauth

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

// RemoteJWKS fetches keys from a JWKS URL and caches them. A token with an unknown kid
// triggers a refetch (a rotated key), at most once per minRefresh so that forged kids cannot
// turn every request into a fetch.
type RemoteJWKS struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	maxAge     time.Duration
	now        func() time.Time

	fetchMu   sync.Mutex // one fetch at a time
	mu        sync.RWMutex
	keys      map[string]crypto.PublicKey
	fetchedAt time.Time
}

// NewRemoteJWKS returns a key source for url. Keys are refetched when older than maxAge, and on
// an unknown kid no more often than every minRefresh.
func NewRemoteJWKS(url string, client *http.Client, minRefresh, maxAge time.Duration) *RemoteJWKS {
	return &RemoteJWKS{url: url, client: client, minRefresh: minRefresh, maxAge: maxAge, now: time.Now}
}

// Key returns the key with id kid, fetching the JWKS when needed.
func (r *RemoteJWKS) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok, fresh, mayFetch := r.lookup(kid); ok && fresh {
		return k, nil
	} else if !ok && !mayFetch {
		return nil, ErrUnknownKey
	}

	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	// Look again: another request may have fetched while this one waited.
	k, ok, fresh, mayFetch := r.lookup(kid)
	if ok && fresh {
		return k, nil
	} else if !ok && !mayFetch {
		return nil, ErrUnknownKey
	}
	if err := r.fetch(ctx); err != nil {
		if ok { // keep verifying with the cached key while the issuer is unreachable
			return k, nil
		}
		return nil, err
	}
	if k, ok, _, _ := r.lookup(kid); ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// lookup returns the cached key, whether the cache is younger than maxAge, and whether a fetch
// is allowed now (never fetched, or the last fetch is at least minRefresh old).
func (r *RemoteJWKS) lookup(kid string) (key crypto.PublicKey, ok, fresh, mayFetch bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	key, ok = r.keys[kid]
	if r.fetchedAt.IsZero() {
		return key, ok, false, true
	}
	age := r.now().Sub(r.fetchedAt)
	return key, ok, age < r.maxAge, age >= r.minRefresh
}

func (r *RemoteJWKS) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return fmt.Errorf("JWKS request: %w", err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fault.New(fault.ErrUnavailable, "cannot fetch token signing keys from "+r.url)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fault.New(fault.ErrUnavailable, fmt.Sprintf("cannot fetch token signing keys from %s (status %d)", r.url, resp.StatusCode))
	}
	keys, err := ParseJWKS(body)
	if err != nil {
		return fault.New(fault.ErrUnavailable, "signing keys at "+r.url+" are unusable: "+err.Error())
	}
	r.mu.Lock()
	r.keys, r.fetchedAt = keys, r.now()
	r.mu.Unlock()
	return nil
}
