package products

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
)

// MemoryStore keeps the catalog in memory; the default when no database is configured. One
// mutex makes every reservation atomic.
type MemoryStore struct {
	mu           sync.Mutex
	products     map[uuid.UUID]Product
	reservations map[uuid.UUID]Reservation
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{products: map[uuid.UUID]Product{}, reservations: map[uuid.UUID]Reservation{}}
}

func (m *MemoryStore) List(_ context.Context, after *Cursor, limit int) ([]Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Product
	for _, p := range m.products {
		if after == nil || after.After(p) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i], out[j]) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func less(a, b Product) bool {
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.ID.String() < b.ID.String()
}

func (m *MemoryStore) Get(_ context.Context, id uuid.UUID) (Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.products[id]
	if !ok {
		return Product{}, ErrProductNotFound
	}
	return p, nil
}

func (m *MemoryStore) Create(_ context.Context, p Product) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.products[p.ID] = p
	return nil
}

func (m *MemoryStore) Update(_ context.Context, p Product) (Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.products[p.ID]
	if !ok {
		return Product{}, ErrProductNotFound
	}
	p.CreatedAt = old.CreatedAt
	m.products[p.ID] = p
	return p, nil
}

func (m *MemoryStore) Seed(_ context.Context, ps []Product) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range ps {
		if _, ok := m.products[p.ID]; !ok {
			m.products[p.ID] = p
			n++
		}
	}
	return n, nil
}

func (m *MemoryStore) Reserve(_ context.Context, orderID uuid.UUID, lines []Line, at, expiresAt time.Time) (Reservation, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.reservations[orderID]; ok {
		if !sameLines(r, lines) {
			return Reservation{}, false, ErrReservationMismatch
		}
		return r, false, nil
	}
	lines = sortLines(lines)
	// Check every line before taking anything, so a failure leaves stock untouched.
	for _, l := range lines {
		p, ok := m.products[l.ProductID]
		if !ok {
			return Reservation{}, false, UnknownProductError(l.ProductID)
		}
		if p.Stock < l.Quantity {
			return Reservation{}, false, InsufficientStockError(l.ProductID, l.Quantity, p.Stock)
		}
	}
	r := Reservation{OrderID: orderID, Status: StatusPending, CreatedAt: at, ExpiresAt: &expiresAt}
	for _, l := range lines {
		p := m.products[l.ProductID]
		p.Stock -= l.Quantity
		p.UpdatedAt = at
		m.products[p.ID] = p
		r.Items = append(r.Items, ReservedLine{ProductID: p.ID, Quantity: l.Quantity, UnitPriceCents: p.PriceCents, Currency: p.Currency})
	}
	m.reservations[orderID] = r
	return r, true, nil
}

func (m *MemoryStore) GetReservation(_ context.Context, orderID uuid.UUID) (Reservation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.reservations[orderID]
	if !ok {
		return Reservation{}, ErrReservationNotFound
	}
	return r, nil
}

func (m *MemoryStore) Confirm(_ context.Context, orderID uuid.UUID) (Reservation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.reservations[orderID]
	if !ok {
		return Reservation{}, ErrReservationNotFound
	}
	r.Status, r.ExpiresAt = StatusConfirmed, nil
	m.reservations[orderID] = r
	return r, nil
}

func (m *MemoryStore) ExpirePending(_ context.Context, now time.Time, limit int) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for id, r := range m.reservations {
		if n == int64(limit) {
			break
		}
		if r.Status == StatusPending && r.ExpiresAt != nil && r.ExpiresAt.Before(now) {
			m.releaseLocked(id, r)
			n++
		}
	}
	return n, nil
}

func (m *MemoryStore) Release(_ context.Context, orderID uuid.UUID) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.reservations[orderID]
	if !ok {
		return false, nil
	}
	if r.Status == StatusConfirmed {
		return false, ErrReservationConfirmed
	}
	m.releaseLocked(orderID, r)
	return true, nil
}

func (m *MemoryStore) releaseLocked(orderID uuid.UUID, r Reservation) {
	for _, it := range r.Items {
		if p, ok := m.products[it.ProductID]; ok {
			p.Stock += it.Quantity
			m.products[p.ID] = p
		}
	}
	delete(m.reservations, orderID)
}
