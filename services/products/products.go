// Package products is the products service: the catalog with its stock, and the stock
// reservations that orders make.
package products

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/stockapi"
)

// Product is a catalog entry.
type Product struct {
	ID          uuid.UUID `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PriceCents  int64     `json:"price_cents"`
	Currency    string    `json:"currency"`
	Stock       int       `json:"stock"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// The reservation wire types are shared with orders.
type (
	Line               = stockapi.Line
	ReservedLine       = stockapi.ReservedLine
	Reservation        = stockapi.Reservation
	ReservationRequest = stockapi.ReservationRequest
)

// Errors the service reports.
var (
	ErrProductNotFound     = fault.New(fault.ErrNotFound, "product not found")
	ErrReservationNotFound = fault.New(fault.ErrNotFound, "no reservation for this order")
	ErrReservationMismatch = fault.New(fault.ErrConflict, "this order already holds a reservation for other items")
	// ErrReservationConfirmed refuses to release the stock of an order that was stored.
	ErrReservationConfirmed = fault.New(fault.ErrConflict, "this reservation is confirmed: its order exists, and its stock is sold")
)

// UnknownProductError: a reservation names a product that does not exist.
func UnknownProductError(id uuid.UUID) error {
	return fault.New(fault.ErrInvalid, fmt.Sprintf("product %s does not exist", id))
}

// InsufficientStockError: a reservation asks for more than is in stock.
func InsufficientStockError(id uuid.UUID, requested, available int) error {
	return fault.New(fault.ErrConflict, fmt.Sprintf("not enough stock for product %s: requested %d, available %d", id, requested, available))
}

// Cursor is the position after the last product of a page: products are ordered by name,
// then id (byte order), so pages stay stable while products are added.
type Cursor struct {
	Name string    `json:"n"`
	ID   uuid.UUID `json:"i"`
}

// After reports whether p sorts after c.
func (c Cursor) After(p Product) bool {
	return p.Name > c.Name || (p.Name == c.Name && p.ID.String() > c.ID.String())
}

// Reservation statuses.
const (
	StatusPending   = stockapi.StatusPending
	StatusConfirmed = stockapi.StatusConfirmed
)

// Store keeps products and reservations.
//
// List returns up to limit products after the cursor (from the start when nil). Reserve takes
// stock for every line or for none; calling it again with the same order and lines returns the
// first reservation (created false); with other lines it returns ErrReservationMismatch.
// A new reservation is pending until expiresAt; Confirm makes it permanent (and returns
// ErrReservationNotFound when there is none: released, or expired). Release gives a pending
// reservation's stock back and reports whether there was one; a confirmed one is
// ErrReservationConfirmed. ExpirePending releases up to limit pending reservations past their
// expiry and says how many; replicas running it at once release each one once.
type Store interface {
	List(ctx context.Context, after *Cursor, limit int) ([]Product, error)
	Get(ctx context.Context, id uuid.UUID) (Product, error)
	Create(ctx context.Context, p Product) error
	Update(ctx context.Context, p Product) (Product, error)
	Seed(ctx context.Context, ps []Product) (int, error)
	Reserve(ctx context.Context, orderID uuid.UUID, lines []Line, now, expiresAt time.Time) (r Reservation, created bool, err error)
	GetReservation(ctx context.Context, orderID uuid.UUID) (Reservation, error)
	Confirm(ctx context.Context, orderID uuid.UUID) (Reservation, error)
	Release(ctx context.Context, orderID uuid.UUID) (bool, error)
	ExpirePending(ctx context.Context, now time.Time, limit int) (int64, error)
}

// ProductInput is the body of POST /products and PUT /products/{id}.
type ProductInput struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	PriceCents  *int64 `json:"price_cents"`
	Currency    string `json:"currency"`
	Stock       *int   `json:"stock"`
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// Validate names every invalid field.
func (in *ProductInput) Validate() error {
	var v fault.Validation
	in.Name = strings.TrimSpace(in.Name)
	in.Currency = strings.ToUpper(strings.TrimSpace(in.Currency))
	v.Check(in.Name != "", "name", "is required")
	v.Check(utf8.RuneCountInString(in.Name) <= 200, "name", "must be at most 200 characters")
	v.Check(utf8.RuneCountInString(in.Description) <= 2000, "description", "must be at most 2000 characters")
	switch {
	case in.PriceCents == nil:
		v.Add("price_cents", "is required")
	case *in.PriceCents < 0 || *in.PriceCents > 100_000_000_00:
		v.Add("price_cents", "must be between 0 and 10000000000")
	}
	v.Check(currencyCode.MatchString(in.Currency), "currency", "must be a three-letter ISO 4217 code such as USD")
	switch {
	case in.Stock == nil:
		v.Add("stock", "is required")
	case *in.Stock < 0 || *in.Stock > 1_000_000_000:
		v.Add("stock", "must be between 0 and 1000000000")
	}
	return v.Err()
}

// sortLines orders lines by product id, so that concurrent reservations lock rows in the same
// order and cannot deadlock.
func sortLines(lines []Line) []Line {
	out := append([]Line(nil), lines...)
	sort.Slice(out, func(i, j int) bool { return out[i].ProductID.String() < out[j].ProductID.String() })
	return out
}

// sameLines reports whether a reservation holds exactly lines.
func sameLines(r Reservation, lines []Line) bool {
	if len(r.Items) != len(lines) {
		return false
	}
	want := map[uuid.UUID]int{}
	for _, l := range lines {
		want[l.ProductID] = l.Quantity
	}
	for _, it := range r.Items {
		if want[it.ProductID] != it.Quantity {
			return false
		}
	}
	return true
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
