package orders

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/stockapi"
	"github.com/shopmesh/shopmesh/services/products"
)

// productsCatalog is the Catalog over the products service's own store, in process, with a
// clock for reservations' expiry and a switch that makes Confirm fail as an unreachable
// products service would.
type productsCatalog struct {
	store       products.Store
	clock       time.Time
	ttl         time.Duration
	confirmDown bool
}

func (c *productsCatalog) Reserve(ctx context.Context, _ string, orderID uuid.UUID, lines []stockapi.Line) (stockapi.Reservation, error) {
	r, _, err := c.store.Reserve(ctx, orderID, lines, c.clock, c.clock.Add(c.ttl))
	return r, err
}

func (c *productsCatalog) Release(ctx context.Context, _ string, orderID uuid.UUID) error {
	_, err := c.store.Release(ctx, orderID)
	return err
}

func (c *productsCatalog) Confirm(ctx context.Context, orderID uuid.UUID) error {
	if c.confirmDown {
		return errors.New("products unreachable")
	}
	_, err := c.store.Confirm(ctx, orderID)
	if errors.Is(err, products.ErrReservationNotFound) {
		return ErrReservationGone
	}
	return err
}

// crashingStore fails CreateOrder at a chosen point: before the commit (nothing stored) or
// after it (stored, but the caller hears an error, as when the connection drops during COMMIT).
type crashingStore struct {
	Store
	afterCommit bool
}

func (s crashingStore) CreateOrder(ctx context.Context, o Order, key string) error {
	if s.afterCommit {
		if err := s.Store.CreateOrder(ctx, o, key); err != nil {
			return err
		}
	}
	return errors.New("connection lost")
}

// TestCrashPoints drives Place into each failure between reserving and confirming, then lets
// time pass: the reconciler runs, and products releases what expired. Every case must end in
// exactly one of "order stored and stock taken" or "no order and stock returned".
func TestCrashPoints(t *testing.T) {
	const initial = 50
	tests := []struct {
		name        string
		store       func(Store) Store
		confirmDown bool
		wantOrder   bool // the client's answer is not what decides: the store is
		wantErr     bool
	}{
		{"stored and confirmed", func(s Store) Store { return s }, false, true, false},
		{"the store fails before its commit", func(s Store) Store { return crashingStore{s, false} }, false, false, true},
		{"the store commits, then the connection drops", func(s Store) Store { return crashingStore{s, true} }, false, true, true},
		{"products is unreachable for the confirmation", func(s Store) Store { return s }, true, true, false},
	}
	for _, tt := range tests {
		for storeName, open := range stores() {
			t.Run(tt.name+"/"+storeName, func(t *testing.T) {
				ctx := context.Background()
				inventory := products.NewMemoryStore()
				p := products.Product{ID: uuid.New(), Name: "Lamp", PriceCents: 900, Currency: "EUR", Stock: initial, CreatedAt: now(), UpdatedAt: now()}
				if err := inventory.Create(ctx, p); err != nil {
					t.Fatal(err)
				}
				catalog := &productsCatalog{store: inventory, clock: now(), ttl: 15 * time.Minute, confirmDown: tt.confirmDown}
				base := open(t)
				user := uuid.New()
				_, _, err := newTestService(tt.store(base), catalog).Place(ctx, user, "token", "key-1", NewOrder{Items: []stockapi.Line{{ProductID: p.ID, Quantity: 3}}})
				if (err != nil) != tt.wantErr {
					t.Fatalf("Place = %v, want an error: %v", err, tt.wantErr)
				}

				// Time passes: the reconciler (on a healthy replica, products reachable again)
				// runs, then the reservation's lifetime ends and products sweeps.
				catalog.confirmDown = false
				svc := newTestService(base, catalog)
				if _, err := svc.ReconcileStock(ctx); err != nil {
					t.Fatalf("ReconcileStock: %v", err)
				}
				if _, err := inventory.ExpirePending(ctx, catalog.clock.Add(16*time.Minute), 100); err != nil {
					t.Fatal(err)
				}

				orders, err := base.List(ctx, user, nil, 10)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := inventory.Get(ctx, p.ID)
				switch {
				case tt.wantOrder && (len(orders) != 1 || got.Stock != initial-3):
					t.Errorf("%d orders, stock %d; want the order stored and its 3 units taken", len(orders), got.Stock)
				case !tt.wantOrder && (len(orders) != 0 || got.Stock != initial):
					t.Errorf("%d orders, stock %d; want no order and all %d units back", len(orders), got.Stock, initial)
				}
				if tt.wantOrder {
					r, err := inventory.GetReservation(ctx, orders[0].ID)
					if err != nil || r.Status != products.StatusConfirmed {
						t.Errorf("the stored order's reservation = %+v, %v; want confirmed", r, err)
					}
					if left, _ := base.Unconfirmed(ctx, now().Add(time.Hour), 10); len(left) != 0 {
						t.Errorf("orders still unconfirmed after the reconciler: %v", left)
					}
				}
			})
		}
	}
}

// TestAReservationNearItsEndIsNotUsed: finishing a stale claim whose reservation has less than
// the confirm margin left gives the stock back and asks the client to try again, rather than storing
// an order whose stock may go before it is confirmed.
func TestAReservationNearItsEndIsNotUsed(t *testing.T) {
	ctx := context.Background()
	inventory := products.NewMemoryStore()
	p := products.Product{ID: uuid.New(), Name: "Lamp", PriceCents: 900, Currency: "EUR", Stock: 10, CreatedAt: now(), UpdatedAt: now()}
	if err := inventory.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	catalog := &productsCatalog{store: inventory, clock: now(), ttl: 30 * time.Second}
	store := NewMemoryStore()
	_, _, err := newTestService(store, catalog).Place(ctx, uuid.New(), "token", "", NewOrder{Items: []stockapi.Line{{ProductID: p.ID, Quantity: 2}}})
	if !errors.Is(err, errReservationEnding) {
		t.Fatalf("Place with 30 s of reservation left = %v, want errReservationEnding", err)
	}
	if got, _ := inventory.Get(ctx, p.ID); got.Stock != 10 {
		t.Errorf("stock = %d, want all 10 back", got.Stock)
	}
}
