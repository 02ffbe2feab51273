package orders

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
)

type claimKey struct {
	user uuid.UUID
	key  string
}

// MemoryStore keeps orders in memory; the default when no database is configured.
type MemoryStore struct {
	mu          sync.Mutex
	orders      map[uuid.UUID]Order
	claims      map[claimKey]Claim
	unconfirmed map[uuid.UUID]bool // orders whose reservation products has not confirmed
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{orders: map[uuid.UUID]Order{}, claims: map[claimKey]Claim{}, unconfirmed: map[uuid.UUID]bool{}}
}

func (m *MemoryStore) ClaimKey(_ context.Context, c Claim) (Claim, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := claimKey{c.UserID, c.Key}
	if existing, ok := m.claims[k]; ok {
		return existing, false, nil
	}
	c.Completed = false
	m.claims[k] = c
	return c, true, nil
}

func (m *MemoryStore) DeleteClaim(_ context.Context, userID uuid.UUID, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.claims[claimKey{userID, key}]; ok && !c.Completed {
		delete(m.claims, claimKey{userID, key})
	}
	return nil
}

func (m *MemoryStore) ExpireClaim(_ context.Context, userID uuid.UUID, key string, before time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.claims[claimKey{userID, key}]; ok && c.CreatedAt.Before(before) {
		delete(m.claims, claimKey{userID, key})
	}
	return nil
}

func (m *MemoryStore) ExpireClaims(_ context.Context, before time.Time, limit int) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for k, c := range m.claims {
		if n == int64(limit) {
			break
		}
		if c.CreatedAt.Before(before) {
			delete(m.claims, k)
			n++
		}
	}
	return n, nil
}

func (m *MemoryStore) CreateOrder(_ context.Context, o Order, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.orders[o.ID]; ok {
		return ErrOrderExists
	}
	o.Items = append([]Item(nil), o.Items...)
	m.orders[o.ID] = o
	m.unconfirmed[o.ID] = true
	if key != "" {
		k := claimKey{o.UserID, key}
		c := m.claims[k]
		c.Completed = true
		m.claims[k] = c
	}
	return nil
}

func (m *MemoryStore) Get(_ context.Context, userID, id uuid.UUID) (Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.orders[id]
	if !ok || o.UserID != userID {
		return Order{}, ErrOrderNotFound
	}
	return o, nil
}

func (m *MemoryStore) List(_ context.Context, userID uuid.UUID, after *Cursor, limit int) ([]Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Order
	for _, o := range m.orders {
		if o.UserID == userID && (after == nil || after.Before(o)) {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return Cursor{CreatedAt: out[i].CreatedAt, ID: out[i].ID}.Before(out[j])
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *MemoryStore) MarkStockConfirmed(_ context.Context, id uuid.UUID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.unconfirmed, id)
	return nil
}

func (m *MemoryStore) Unconfirmed(_ context.Context, before time.Time, limit int) ([]uuid.UUID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Order
	for id := range m.unconfirmed {
		if o := m.orders[id]; o.CreatedAt.Before(before) {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	ids := make([]uuid.UUID, 0, min(limit, len(out)))
	for _, o := range out[:min(limit, len(out))] {
		ids = append(ids, o.ID)
	}
	return ids, nil
}
