package orders

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/pgdb/pgtest"
)

func stores() map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"memory":   func(*testing.T) Store { return NewMemoryStore() },
		"postgres": func(t *testing.T) Store { return NewPostgresStore(pgtest.Open(t, Migrations())) },
	}
}

func forEachStore(t *testing.T, test func(t *testing.T, s Store)) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) { test(t, open(t)) })
	}
}

func order(user uuid.UUID, at time.Time) Order {
	return Order{ID: uuid.New(), UserID: user, Status: StatusConfirmed, Currency: "USD", TotalCents: 700, CreatedAt: at,
		Items: []Item{{ProductID: uuid.New(), Quantity: 2, UnitPriceCents: 350}}}
}

func TestStoreOrders(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		alice, bob := uuid.New(), uuid.New()
		o := order(alice, now())
		if err := s.CreateOrder(ctx, o, ""); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, alice, o.ID)
		if err != nil || got.ID != o.ID || got.TotalCents != 700 || len(got.Items) != 1 || got.Items[0] != o.Items[0] || !got.CreatedAt.Equal(o.CreatedAt) {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, o)
		}
		if _, err := s.Get(ctx, bob, o.ID); !errors.Is(err, ErrOrderNotFound) {
			t.Errorf("Get of another user's order = %v, want ErrOrderNotFound", err)
		}
		if err := s.CreateOrder(ctx, o, ""); !errors.Is(err, ErrOrderExists) {
			t.Errorf("CreateOrder with a taken id = %v, want ErrOrderExists", err)
		}
	})
}

func TestStoreListNewestFirstByPages(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		alice := uuid.New()
		base := now()
		// Two orders share a timestamp, so the id must break the tie.
		for _, at := range []time.Time{base, base.Add(time.Second), base.Add(time.Second), base.Add(2 * time.Second), base.Add(-time.Hour)} {
			if err := s.CreateOrder(ctx, order(alice, at), ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateOrder(ctx, order(uuid.New(), base), ""); err != nil { // someone else's
			t.Fatal(err)
		}
		var seen []Order
		var after *Cursor
		for {
			page, err := s.List(ctx, alice, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, page...)
			if len(page) < 2 {
				break
			}
			last := page[len(page)-1]
			after = &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		if len(seen) != 5 {
			t.Fatalf("listed %d orders, want alice's 5", len(seen))
		}
		for i := 1; i < len(seen); i++ {
			if !(Cursor{CreatedAt: seen[i-1].CreatedAt, ID: seen[i-1].ID}).Before(seen[i]) {
				t.Errorf("order %d is not older than order %d", i, i-1)
			}
			if len(seen[i].Items) != 1 {
				t.Errorf("order %d has %d items, want 1", i, len(seen[i].Items))
			}
		}
	})
}

func TestStoreClaims(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		alice := uuid.New()
		c := Claim{UserID: alice, Key: "k1", RequestHash: "h1", OrderID: uuid.New(), CreatedAt: now()}
		if _, claimed, err := s.ClaimKey(ctx, c); !claimed || err != nil {
			t.Fatalf("first ClaimKey = %v, %v", claimed, err)
		}
		second := c
		second.OrderID, second.RequestHash = uuid.New(), "h2"
		existing, claimed, err := s.ClaimKey(ctx, second)
		if claimed || err != nil || existing.OrderID != c.OrderID || existing.RequestHash != "h1" || existing.Completed {
			t.Fatalf("second ClaimKey = %+v, %v, %v; want the first claim, pending", existing, claimed, err)
		}
		// Keys belong to a user: bob may use the same one.
		bob := c
		bob.UserID = uuid.New()
		if _, claimed, err := s.ClaimKey(ctx, bob); !claimed || err != nil {
			t.Errorf("ClaimKey by another user = %v, %v; want claimed", claimed, err)
		}

		// Completing the order completes the claim; a completed claim is not dropped.
		o := order(alice, now())
		o.ID = c.OrderID
		if err := s.CreateOrder(ctx, o, "k1"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteClaim(ctx, alice, "k1"); err != nil {
			t.Fatal(err)
		}
		existing, claimed, _ = s.ClaimKey(ctx, second)
		if claimed || !existing.Completed {
			t.Errorf("after CreateOrder: claim = %+v, claimed %v; want completed and kept", existing, claimed)
		}

		// A pending claim is dropped, so the key can be used again.
		p := Claim{UserID: alice, Key: "k2", RequestHash: "h", OrderID: uuid.New(), CreatedAt: now()}
		_, _, _ = s.ClaimKey(ctx, p)
		if err := s.DeleteClaim(ctx, alice, "k2"); err != nil {
			t.Fatal(err)
		}
		if _, claimed, _ := s.ClaimKey(ctx, p); !claimed {
			t.Error("a dropped pending claim could not be claimed again")
		}
	})
}
