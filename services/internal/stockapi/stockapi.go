// Package stockapi is the reservation API that products serves and orders calls: its wire
// types and the rules both sides apply to order lines.
package stockapi

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

// Line asks for quantity units of a product.
type Line struct {
	ProductID uuid.UUID `json:"product_id"`
	Quantity  int       `json:"quantity"`
}

// ReservedLine is a reserved line with the catalog price it was reserved at.
type ReservedLine struct {
	ProductID      uuid.UUID `json:"product_id"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
	Currency       string    `json:"currency"`
}

// Reservation holds stock for one order: the body of 200/201 from POST /reservations. It is
// pending until orders confirms it, after storing the order; a pending reservation past
// ExpiresAt is released, a confirmed one never.
type Reservation struct {
	OrderID   uuid.UUID      `json:"order_id"`
	Status    string         `json:"status"`
	Items     []ReservedLine `json:"items"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt *time.Time     `json:"expires_at,omitempty"` // pending only
}

// Reservation statuses.
const (
	StatusPending   = "pending"
	StatusConfirmed = "confirmed"
)

// ReservationRequest is the body of POST /reservations.
type ReservationRequest struct {
	OrderID uuid.UUID `json:"order_id"`
	Items   []Line    `json:"items"`
}

// Validate names every invalid field.
func (r *ReservationRequest) Validate() error {
	var v fault.Validation
	v.Check(r.OrderID != uuid.Nil, "order_id", "is required")
	ValidateLines(&v, r.Items)
	return v.Err()
}

// Limits on the lines of one order.
const (
	MaxLines    = 100
	MaxQuantity = 10_000
)

// ValidateLines checks the lines of an order: 1 to MaxLines, each product once, quantities 1
// to MaxQuantity.
func ValidateLines(v *fault.Validation, lines []Line) {
	if len(lines) == 0 || len(lines) > MaxLines {
		v.Add("items", fmt.Sprintf("must hold 1 to %d items", MaxLines))
	}
	seen := map[uuid.UUID]bool{}
	for i, l := range lines {
		field := fmt.Sprintf("items[%d]", i)
		switch {
		case l.ProductID == uuid.Nil:
			v.Add(field+".product_id", "is required")
		case seen[l.ProductID]:
			v.Add(field+".product_id", "appears more than once; put the whole quantity in one item")
		}
		seen[l.ProductID] = true
		v.Check(l.Quantity >= 1 && l.Quantity <= MaxQuantity, field+".quantity", fmt.Sprintf("must be between 1 and %d", MaxQuantity))
	}
}

// The reservation's timing, a pair of settings in two services: products holds stock for
// RESERVATION_TTL, and orders stores an order only while its reservation has CONFIRM_MARGIN
// left, so that the confirmation reaches products in time.
const (
	DefaultReservationTTL = 15 * time.Minute
	DefaultConfirmMargin  = time.Minute
	// orderTime is what an order takes between its reservation and that check, with room.
	orderTime = time.Second
)

// CheckTiming refuses a RESERVATION_TTL that leaves no order its CONFIRM_MARGIN: with such a
// pair every order would be answered 503. Both services check it at start, each reading the
// other's key too (its default when unset), and `make run` checks the pair it gives them.
func CheckTiming(ttl, margin time.Duration) error {
	if ttl < margin+orderTime {
		return fmt.Errorf("RESERVATION_TTL (%s, products) must exceed CONFIRM_MARGIN (%s, orders) by at least %s: "+
			"orders stores an order only while its reservation has CONFIRM_MARGIN left, so every order would be refused; "+
			"raise RESERVATION_TTL or lower CONFIRM_MARGIN, on both services", ttl, margin, orderTime)
	}
	return nil
}
