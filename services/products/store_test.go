package products

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/pgdb/pgtest"
)

// stores returns every Store implementation; the contract tests run on each.
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

func product(name string, stock int) Product {
	t := now()
	return Product{ID: uuid.New(), Name: name, PriceCents: 500, Currency: "USD", Stock: stock, CreatedAt: t, UpdatedAt: t}
}

func mustCreate(t *testing.T, s Store, ps ...Product) {
	t.Helper()
	for _, p := range ps {
		if err := s.Create(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStoreCRUD(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		p := product("Kettle", 3)
		mustCreate(t, s, p)
		got, err := s.Get(ctx, p.ID)
		if err != nil || got != p {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, p)
		}
		p.Name, p.Stock, p.UpdatedAt = "Kettle 2", 9, now()
		up, err := s.Update(ctx, p)
		if err != nil || up.Name != "Kettle 2" || up.Stock != 9 || !up.CreatedAt.Equal(got.CreatedAt) {
			t.Fatalf("Update = %+v, %v", up, err)
		}
		if _, err := s.Get(ctx, uuid.New()); !errors.Is(err, ErrProductNotFound) {
			t.Errorf("Get(unknown) = %v, want ErrProductNotFound", err)
		}
		if _, err := s.Update(ctx, product("x", 1)); !errors.Is(err, ErrProductNotFound) {
			t.Errorf("Update(unknown) = %v, want ErrProductNotFound", err)
		}
	})
}

func TestStoreListPagesInStableOrder(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		// Two products share a name so the id breaks the tie; "a" and "B" check byte order.
		names := []string{"b", "a", "B", "c", "a", "Z", "d"}
		for _, n := range names {
			mustCreate(t, s, product(n, 1))
		}
		var seen []Product
		var after *Cursor
		for pages := 0; ; pages++ {
			page, err := s.List(ctx, after, 3)
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, page...)
			if len(page) < 3 {
				break
			}
			last := page[len(page)-1]
			after = &Cursor{Name: last.Name, ID: last.ID}
			// A product added before the cursor must not shift later pages.
			if pages == 0 {
				mustCreate(t, s, product("A", 1))
			}
		}
		if len(seen) != len(names) {
			t.Fatalf("walked %d products, want %d", len(seen), len(names))
		}
		for i := 1; i < len(seen); i++ {
			if !less(seen[i-1], seen[i]) {
				t.Errorf("order broken at %d: %q/%s then %q/%s", i, seen[i-1].Name, seen[i-1].ID, seen[i].Name, seen[i].ID)
			}
		}
	})
}

func TestStoreSeedIsIdempotent(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		n1, err := s.Seed(ctx, DemoCatalog())
		if err != nil || n1 != len(DemoCatalog()) {
			t.Fatalf("first Seed = %d, %v", n1, err)
		}
		n2, err := s.Seed(ctx, DemoCatalog())
		if err != nil || n2 != 0 {
			t.Fatalf("second Seed = %d, %v; want 0", n2, err)
		}
	})
}

func TestStoreReserve(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		a, b := product("a", 5), product("b", 2)
		mustCreate(t, s, a, b)
		stock := func(p Product) int {
			got, err := s.Get(ctx, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got.Stock
		}

		order := uuid.New()
		lines := []Line{line(a.ID, 3), line(b.ID, 2)}
		r, created, err := s.Reserve(ctx, order, lines, now(), now().Add(time.Hour))
		if err != nil || !created || len(r.Items) != 2 {
			t.Fatalf("Reserve = %+v, %v, %v", r, created, err)
		}
		for _, it := range r.Items {
			if it.UnitPriceCents != 500 || it.Currency != "USD" {
				t.Errorf("reserved line %+v lacks the catalog price", it)
			}
		}
		if stock(a) != 2 || stock(b) != 0 {
			t.Fatalf("stock after reserve = %d, %d; want 2, 0", stock(a), stock(b))
		}

		// Same order, same lines: the first reservation again, nothing taken twice.
		again, created, err := s.Reserve(ctx, order, []Line{line(b.ID, 2), line(a.ID, 3)}, now(), now().Add(time.Hour))
		if err != nil || created || len(again.Items) != 2 || stock(a) != 2 {
			t.Fatalf("repeat Reserve = %+v, %v, %v; stock a %d", again, created, err, stock(a))
		}
		if _, _, err := s.Reserve(ctx, order, []Line{line(a.ID, 1)}, now(), now().Add(time.Hour)); !errors.Is(err, ErrReservationMismatch) {
			t.Errorf("Reserve with other lines = %v, want ErrReservationMismatch", err)
		}

		// All or nothing: the second line fails, so the first takes nothing.
		_, _, err = s.Reserve(ctx, uuid.New(), []Line{line(a.ID, 1), line(b.ID, 1)}, now(), now().Add(time.Hour))
		if !errors.Is(err, fault.ErrConflict) {
			t.Errorf("Reserve beyond stock = %v, want a conflict", err)
		}
		_, _, err = s.Reserve(ctx, uuid.New(), []Line{line(a.ID, 1), line(uuid.New(), 1)}, now(), now().Add(time.Hour))
		if !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("Reserve of an unknown product = %v, want invalid", err)
		}
		if stock(a) != 2 {
			t.Errorf("failed reservations changed stock: a = %d, want 2", stock(a))
		}

		got, err := s.GetReservation(ctx, order)
		if err != nil || len(got.Items) != 2 {
			t.Errorf("GetReservation = %+v, %v", got, err)
		}
		if ok, err := s.Release(ctx, order); !ok || err != nil {
			t.Fatalf("Release = %v, %v", ok, err)
		}
		if stock(a) != 5 || stock(b) != 2 {
			t.Errorf("stock after release = %d, %d; want 5, 2", stock(a), stock(b))
		}
		if ok, err := s.Release(ctx, order); ok || err != nil {
			t.Errorf("second Release = %v, %v; want false, nil", ok, err)
		}
		if stock(a) != 5 {
			t.Errorf("second release gave stock back again: %d", stock(a))
		}
		if _, err := s.GetReservation(ctx, order); !errors.Is(err, ErrReservationNotFound) {
			t.Errorf("GetReservation after release = %v", err)
		}
	})
}

// TestStoreReserveNeverOversells races 50 orders of one unit each for 10 in stock.
func TestStoreReserveNeverOversells(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		p := product("scarce", 10)
		mustCreate(t, s, p)
		var ok, conflict, other atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := s.Reserve(ctx, uuid.New(), []Line{line(p.ID, 1)}, now(), now().Add(time.Hour))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, fault.ErrConflict):
					conflict.Add(1)
				default:
					other.Add(1)
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		got, err := s.Get(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ok.Load() != 10 || conflict.Load() != 40 || got.Stock != 0 {
			t.Errorf("reserved %d, refused %d, failed %d, stock left %d; want 10, 40, 0, 0",
				ok.Load(), conflict.Load(), other.Load(), got.Stock)
		}
	})
}

// TestStoreReserveSameOrderConcurrently: retries of one order racing each other reserve once.
func TestStoreReserveSameOrderConcurrently(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		p := product("p", 100)
		mustCreate(t, s, p)
		order := uuid.New()
		var created atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, c, err := s.Reserve(ctx, order, []Line{line(p.ID, 3)}, now(), now().Add(time.Hour))
				if err != nil {
					t.Error(fmt.Errorf("reserve: %w", err))
				}
				if c {
					created.Add(1)
				}
			}()
		}
		wg.Wait()
		got, _ := s.Get(ctx, p.ID)
		if created.Load() != 1 || got.Stock != 97 {
			t.Errorf("created %d reservations, stock %d; want 1, 97", created.Load(), got.Stock)
		}
	})
}

func line(id uuid.UUID, qty int) Line { return Line{ProductID: id, Quantity: qty} }

// TestReservationLifeCycle: a reservation is pending until confirmed; a confirmed one is never
// released, by expiry or by Release; a pending one past its expiry gives its stock back, once,
// however many sweepers run at the same time.
func TestReservationLifeCycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		p := product("Lamp", 100)
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		t0 := now()
		confirmed, expiring, fresh := uuid.New(), uuid.New(), uuid.New()
		for id, ttl := range map[uuid.UUID]time.Duration{confirmed: time.Minute, expiring: time.Minute, fresh: time.Hour} {
			r, _, err := s.Reserve(ctx, id, []Line{line(p.ID, 10)}, t0, t0.Add(ttl))
			if err != nil || r.Status != StatusPending || r.ExpiresAt == nil || !r.ExpiresAt.Equal(t0.Add(ttl)) {
				t.Fatalf("Reserve = %+v, %v; want pending until %v", r, err, t0.Add(ttl))
			}
		}
		if r, err := s.Confirm(ctx, confirmed); err != nil || r.Status != StatusConfirmed || r.ExpiresAt != nil {
			t.Fatalf("Confirm = %+v, %v", r, err)
		}
		if r, err := s.Confirm(ctx, confirmed); err != nil || r.Status != StatusConfirmed {
			t.Errorf("a second Confirm = %+v, %v; want the same confirmed reservation", r, err)
		}
		if _, err := s.Release(ctx, confirmed); !errors.Is(err, ErrReservationConfirmed) {
			t.Errorf("Release of a confirmed reservation = %v, want ErrReservationConfirmed", err)
		}

		// Eight sweepers at once, two minutes later: the one expired pending reservation goes.
		var wg sync.WaitGroup
		var released atomic.Int64
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := s.ExpirePending(ctx, t0.Add(2*time.Minute), 100)
				if err != nil {
					t.Error(err)
				}
				released.Add(n)
			}()
		}
		wg.Wait()
		if released.Load() != 1 {
			t.Errorf("sweepers released %d reservations, want 1", released.Load())
		}
		got, err := s.Get(ctx, p.ID)
		if err != nil || got.Stock != 100-20 {
			t.Errorf("stock = %d, %v; want 80: the confirmed and the fresh reservation keep theirs", got.Stock, err)
		}
		if _, err := s.GetReservation(ctx, expiring); !errors.Is(err, ErrReservationNotFound) {
			t.Errorf("the expired reservation is still there: %v", err)
		}
		if _, err := s.Confirm(ctx, expiring); !errors.Is(err, ErrReservationNotFound) {
			t.Errorf("Confirm after expiry = %v, want ErrReservationNotFound", err)
		}
		if r, err := s.GetReservation(ctx, fresh); err != nil || r.Status != StatusPending {
			t.Errorf("the fresh reservation = %+v, %v; want still pending", r, err)
		}
		if r, err := s.GetReservation(ctx, confirmed); err != nil || r.Status != StatusConfirmed {
			t.Errorf("the confirmed reservation = %+v, %v", r, err)
		}
	})
}
