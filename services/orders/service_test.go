package orders

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/stockapi"
)

// fakeCatalog reserves in memory and can be told to fail.
type fakeCatalog struct {
	mu          sync.Mutex
	reserved    map[uuid.UUID]stockapi.Reservation
	reserveErr  error // returned by Reserve
	afterTaking bool  // fail only after taking the stock, like a lost response
	releases    int
}

func newFakeCatalog() *fakeCatalog {
	return &fakeCatalog{reserved: map[uuid.UUID]stockapi.Reservation{}}
}

func (f *fakeCatalog) Reserve(_ context.Context, _ string, orderID uuid.UUID, lines []stockapi.Line) (stockapi.Reservation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reserveErr != nil && !f.afterTaking {
		return stockapi.Reservation{}, f.reserveErr
	}
	r, ok := f.reserved[orderID]
	if !ok {
		r = stockapi.Reservation{OrderID: orderID}
		for _, l := range lines {
			r.Items = append(r.Items, stockapi.ReservedLine{ProductID: l.ProductID, Quantity: l.Quantity, UnitPriceCents: 250, Currency: "USD"})
		}
		f.reserved[orderID] = r
	}
	if f.reserveErr != nil {
		return stockapi.Reservation{}, f.reserveErr
	}
	return r, nil
}

func (f *fakeCatalog) Release(_ context.Context, _ string, orderID uuid.UUID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases++
	delete(f.reserved, orderID)
	return nil
}

func (f *fakeCatalog) Confirm(_ context.Context, orderID uuid.UUID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.reserved[orderID]; !ok {
		return ErrReservationGone
	}
	return nil
}

func (f *fakeCatalog) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reserved)
}

// failingStore fails CreateOrder.
type failingStore struct{ Store }

func (failingStore) CreateOrder(context.Context, Order, string) error {
	return errors.New("connection reset")
}

func newTestService(store Store, cat Catalog) *Service {
	return NewService(store, cat, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Minute, DefaultKeyTTL)
}

func oneItem() NewOrder {
	return NewOrder{Items: []stockapi.Line{{ProductID: uuid.New(), Quantity: 2}}}
}

func TestPlacePricesFromCatalog(t *testing.T) {
	svc := newTestService(NewMemoryStore(), newFakeCatalog())
	o, replayed, err := svc.Place(context.Background(), uuid.New(), "tok", "", oneItem())
	if err != nil || replayed {
		t.Fatal(err, replayed)
	}
	if o.TotalCents != 500 || o.Currency != "USD" || o.Items[0].UnitPriceCents != 250 || o.Status != StatusConfirmed {
		t.Errorf("order = %+v", o)
	}
}

func TestPlaceLeavesNothingBehindOnFailure(t *testing.T) {
	tests := []struct {
		name     string
		store    func() Store
		catalog  func() *fakeCatalog
		wantKind error
		// The store failed: the order may have been committed, so the reservation is left
		// pending, for the reconciler to confirm or for products to release at its expiry
		// (TestCrashPoints follows both).
		wantPending int
	}{
		{"products unreachable", func() Store { return NewMemoryStore() },
			func() *fakeCatalog {
				c := newFakeCatalog()
				c.reserveErr = fault.New(fault.ErrUnavailable, "down")
				return c
			}, fault.ErrUnavailable, 0},
		{"response lost after reserving", func() Store { return NewMemoryStore() },
			func() *fakeCatalog {
				c := newFakeCatalog()
				c.reserveErr, c.afterTaking = context.DeadlineExceeded, true
				return c
			}, context.DeadlineExceeded, 0},
		{"database fails", func() Store { return failingStore{NewMemoryStore()} }, newFakeCatalog, nil, 1},
		{"out of stock", func() Store { return NewMemoryStore() },
			func() *fakeCatalog {
				c := newFakeCatalog()
				c.reserveErr = fault.New(fault.ErrConflict, "not enough stock")
				return c
			}, fault.ErrConflict, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, cat := tt.store(), tt.catalog()
			svc := newTestService(store, cat)
			user := uuid.New()
			_, _, err := svc.Place(context.Background(), user, "tok", "key-1", oneItem())
			if err == nil {
				t.Fatal("Place succeeded")
			}
			if tt.wantKind != nil && !errors.Is(err, tt.wantKind) {
				t.Errorf("error = %v, want %v", err, tt.wantKind)
			}
			if n := cat.count(); n != tt.wantPending {
				t.Errorf("%d reservations left behind, want %d", n, tt.wantPending)
			}
			orders, _ := store.List(context.Background(), user, nil, 10)
			if len(orders) != 0 {
				t.Errorf("%d orders left behind", len(orders))
			}
			// The key is free again, so the client can retry it.
			if _, claimed, _ := store.ClaimKey(context.Background(), Claim{UserID: user, Key: "key-1", RequestHash: "x", OrderID: uuid.New(), CreatedAt: now()}); !claimed {
				t.Error("the failed request's Idempotency-Key is still claimed")
			}
		})
	}
}

func TestPlaceIdempotency(t *testing.T) {
	ctx := context.Background()
	store, cat := NewMemoryStore(), newFakeCatalog()
	svc := newTestService(store, cat)
	user := uuid.New()
	req := oneItem()

	first, replayed, err := svc.Place(ctx, user, "tok", "k", req)
	if err != nil || replayed {
		t.Fatal(err)
	}
	again, replayed, err := svc.Place(ctx, user, "tok", "k", req)
	if err != nil || !replayed || again.ID != first.ID || again.TotalCents != first.TotalCents {
		t.Errorf("replay = %+v, %v, %v; want order %s replayed", again, replayed, err, first.ID)
	}
	other := oneItem()
	if _, _, err := svc.Place(ctx, user, "tok", "k", other); !errors.Is(err, ErrKeyReused) {
		t.Errorf("same key, other body = %v, want ErrKeyReused", err)
	}
	if cat.count() != 1 {
		t.Errorf("%d reservations, want 1", cat.count())
	}

	// A pending claim that is recent means another request is at work.
	pending := Claim{UserID: user, Key: "busy", RequestHash: req.hash(), OrderID: uuid.New(), CreatedAt: now()}
	_, _, _ = store.ClaimKey(ctx, pending)
	if _, _, err := svc.Place(ctx, user, "tok", "busy", req); !errors.Is(err, ErrKeyInProgress) {
		t.Errorf("key in progress = %v, want ErrKeyInProgress", err)
	}
	// A stale one belongs to a request that died: finish it under its order id.
	stale := Claim{UserID: user, Key: "dead", RequestHash: req.hash(), OrderID: uuid.New(), CreatedAt: now().Add(-time.Hour)}
	_, _, _ = store.ClaimKey(ctx, stale)
	o, _, err := svc.Place(ctx, user, "tok", "dead", req)
	if err != nil || o.ID != stale.OrderID {
		t.Errorf("stale claim: order %v, %v; want the claim's order %s", o.ID, err, stale.OrderID)
	}
}

func TestParseIdempotencyKey(t *testing.T) {
	for raw, want := range map[string]string{"": "", "abc": "abc", `"abc"`: "abc", " abc ": "abc"} {
		if got, err := ParseIdempotencyKey(raw); err != nil || got != want {
			t.Errorf("ParseIdempotencyKey(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{`""`, "has space", "é", string(make([]byte, 300))} {
		if _, err := ParseIdempotencyKey(raw); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("ParseIdempotencyKey(%q) = %v, want invalid", raw, err)
		}
	}
}

// TestKeysAreForgottenAfterTheWindow: within DefaultKeyTTL a retry answers the same order;
// after it the key is free again, whether or not the pruner has run; the pruner removes old
// keys in batches and keeps the recent ones.
func TestKeysAreForgottenAfterTheWindow(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := open(t)
			svc := newTestService(store, newFakeCatalog())
			user := uuid.New()
			req := oneItem()
			// Orders placed with keys 23 h and 25 h ago.
			for key, age := range map[string]time.Duration{"recent": 23 * time.Hour, "old": 25 * time.Hour} {
				id := uuid.New()
				if _, claimed, err := store.ClaimKey(ctx, Claim{UserID: user, Key: key, RequestHash: req.hash(), OrderID: id, CreatedAt: now().Add(-age)}); err != nil || !claimed {
					t.Fatal(claimed, err)
				}
				if err := store.CreateOrder(ctx, Order{ID: id, UserID: user, Status: StatusConfirmed, Currency: "EUR", CreatedAt: now().Add(-age),
					Items: []Item{{ProductID: req.Items[0].ProductID, Quantity: 2, UnitPriceCents: 100}}, TotalCents: 200}, key); err != nil {
					t.Fatal(err)
				}
			}
			recent, replayed, err := svc.Place(ctx, user, "token", "recent", req)
			if err != nil || !replayed {
				t.Errorf("a retry 23 h later = %v, replayed %v; want the same order again", err, replayed)
			}
			old, replayed, err := svc.Place(ctx, user, "token", "old", req)
			if err != nil || replayed || old.ID == recent.ID {
				t.Errorf("a key reused 25 h later = %+v, replayed %v, %v; want a new order", old.ID, replayed, err)
			}

			// The pruner: three more old keys, removed two at a time; the fresh ones stay.
			for i := range 3 {
				if _, _, err := store.ClaimKey(ctx, Claim{UserID: user, Key: fmt.Sprint("stale-", i), RequestHash: "h", OrderID: uuid.New(), CreatedAt: now().Add(-48 * time.Hour)}); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := svc.ExpireKeys(ctx, 2); err != nil || n != 3 { // "recent" is 23 h old: kept
				t.Errorf("ExpireKeys = %d, %v; want the 3 stale keys", n, err)
			}
			if c, claimed, err := store.ClaimKey(ctx, Claim{UserID: user, Key: "old", RequestHash: "other", OrderID: uuid.New(), CreatedAt: now()}); err != nil || claimed || c.OrderID != old.ID {
				t.Errorf("the re-used key's new claim was pruned or changed: %+v, %v, %v", c, claimed, err)
			}
		})
	}
}
