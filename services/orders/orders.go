// Package orders is the orders service: customers place orders, which reserve stock in the
// products service at the catalog's prices, and list their own orders.
package orders

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/stockapi"
)

// StatusConfirmed is the status of an order whose stock is reserved and which is stored.
const StatusConfirmed = "confirmed"

// Order is a placed order.
type Order struct {
	ID         uuid.UUID `json:"id"`
	UserID     uuid.UUID `json:"-"`
	Status     string    `json:"status"`
	Items      []Item    `json:"items"`
	TotalCents int64     `json:"total_cents"`
	Currency   string    `json:"currency"`
	CreatedAt  time.Time `json:"created_at"`
}

// Item is one line of an order, at the price the catalog had when it was placed.
type Item struct {
	ProductID      uuid.UUID `json:"product_id"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
}

// Claim records that a user's Idempotency-Key is bound to one request body and one order.
type Claim struct {
	UserID      uuid.UUID
	Key         string
	RequestHash string
	OrderID     uuid.UUID
	Completed   bool
	CreatedAt   time.Time
}

// Errors the service reports.
var (
	ErrOrderNotFound = fault.New(fault.ErrNotFound, "order not found")
	ErrOrderExists   = errors.New("an order with this id already exists")
	ErrKeyReused     = fault.New(fault.ErrInvalid, "this Idempotency-Key was already used with a different request body; use a new key for a new order")
	ErrKeyInProgress = fault.New(fault.ErrConflict, "a request with this Idempotency-Key is still being processed; retry shortly")
	ErrMixedCurrency = fault.New(fault.ErrInvalid, "all products of one order must be priced in the same currency")
	// ErrReservationGone: products released the reservation (it expired) before orders confirmed it.
	ErrReservationGone   = errors.New("the reservation expired before it was confirmed")
	errReservationEnding = fault.Retry(fault.ErrUnavailable, "the stock held for this order was about to be released; place the order again", time.Second)
)

// DefaultConfirmMargin: an order is stored only while its reservation has at least this long
// left, so that the confirmation after the commit (or the reconciler's) reaches products
// before its expiry.
const DefaultConfirmMargin = stockapi.DefaultConfirmMargin

// Cursor is the position after the last order of a page: newest first, ties broken by id.
type Cursor struct {
	CreatedAt time.Time `json:"t"`
	ID        uuid.UUID `json:"i"`
}

// Before reports whether o sorts after the cursor (it is older).
func (c Cursor) Before(o Order) bool {
	return o.CreatedAt.Before(c.CreatedAt) || (o.CreatedAt.Equal(c.CreatedAt) && o.ID.String() < c.ID.String())
}

// Store keeps orders and idempotency claims.
//
// ClaimKey stores c unless the user already has a claim on c.Key, which it returns instead
// (claimed false). CreateOrder stores the order and, when key is set, completes its claim, in
// one step; it returns ErrOrderExists when the id is taken. DeleteClaim drops a claim that
// was not completed. Get returns ErrOrderNotFound for an order of another user.
type Store interface {
	ClaimKey(ctx context.Context, c Claim) (existing Claim, claimed bool, err error)
	DeleteClaim(ctx context.Context, userID uuid.UUID, key string) error
	CreateOrder(ctx context.Context, o Order, key string) error
	Get(ctx context.Context, userID, id uuid.UUID) (Order, error)
	List(ctx context.Context, userID uuid.UUID, after *Cursor, limit int) ([]Order, error)
	// ExpireClaim drops the user's claim on key when it was made before before; ExpireClaims
	// drops up to limit claims made before before, and says how many.
	ExpireClaim(ctx context.Context, userID uuid.UUID, key string, before time.Time) error
	ExpireClaims(ctx context.Context, before time.Time, limit int) (int64, error)
	// CreateOrder stores an order as not yet confirmed with products; MarkStockConfirmed
	// records that it was; Unconfirmed lists up to limit orders created before before that
	// were not.
	MarkStockConfirmed(ctx context.Context, id uuid.UUID) error
	Unconfirmed(ctx context.Context, before time.Time, limit int) ([]uuid.UUID, error)
}

// DefaultKeyTTL is how long an Idempotency-Key is remembered: a retry within it answers the
// same order; after it, the key is free again (the IETF idempotency-key draft leaves the window
// to the server; 24 hours is the common choice).
const DefaultKeyTTL = 24 * time.Hour

// Catalog reserves and releases stock; the products service over HTTP in production. token is
// the customer's, passed on so that products can check it.
type Catalog interface {
	Reserve(ctx context.Context, token string, orderID uuid.UUID, lines []stockapi.Line) (stockapi.Reservation, error)
	Release(ctx context.Context, token string, orderID uuid.UUID) error
	Confirm(ctx context.Context, orderID uuid.UUID) error
}

// Service places orders.
type Service struct {
	store      Store
	catalog    Catalog
	logger     *slog.Logger
	staleAfter time.Duration // a pending claim older than this belongs to a request that died
	keyTTL     time.Duration // an Idempotency-Key older than this is forgotten
	margin     time.Duration // DefaultConfirmMargin, or CONFIRM_MARGIN
	faults     faults
}

// NewService returns a service; staleAfter must exceed the longest a request can run, and
// keyTTL must exceed staleAfter.
func NewService(store Store, catalog Catalog, logger *slog.Logger, staleAfter, keyTTL time.Duration) *Service {
	return &Service{store: store, catalog: catalog, logger: logger, staleAfter: staleAfter, keyTTL: max(keyTTL, 2*staleAfter),
		margin: DefaultConfirmMargin}
}

// ExpireKeys forgets the Idempotency-Keys older than the window, in batches of batch, each
// a short statement of its own, so that no lock is held for long; it returns how many.
func (s *Service) ExpireKeys(ctx context.Context, batch int) (int64, error) {
	before := now().Add(-s.keyTTL)
	var total int64
	for {
		n, err := s.store.ExpireClaims(ctx, before, batch)
		total += n
		if err != nil || n < int64(batch) {
			return total, err
		}
	}
}

// NewOrder is the body of POST /orders.
type NewOrder struct {
	Items []stockapi.Line `json:"items"`
}

// Validate names every invalid field.
func (n *NewOrder) Validate() error {
	var v fault.Validation
	stockapi.ValidateLines(&v, n.Items)
	return v.Err()
}

// hash identifies a request body regardless of item order.
func (n NewOrder) hash() string {
	lines := append([]stockapi.Line(nil), n.Items...)
	sort.Slice(lines, func(i, j int) bool { return lines[i].ProductID.String() < lines[j].ProductID.String() })
	b, _ := json.Marshal(lines)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// MaxKeyLen bounds Idempotency-Key values.
const MaxKeyLen = 255

// ParseIdempotencyKey validates the header value; the IETF draft sends it as a quoted string.
func ParseIdempotencyKey(raw string) (string, error) {
	key := strings.TrimSpace(raw)
	if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
		key = key[1 : len(key)-1]
	}
	if raw == "" {
		return "", nil
	}
	ok := key != "" && len(key) <= MaxKeyLen
	for _, r := range key {
		// Visible ASCII; no quote or backslash, which a structured-field string would have to
		// escape (found by FuzzParseIdempotencyKey: `""""` was accepted as `""`).
		ok = ok && r > ' ' && r < 0x7f && r != '"' && r != '\\'
	}
	if !ok {
		var v fault.Validation
		v.Add("Idempotency-Key", fmt.Sprintf("must be 1 to %d visible ASCII characters, such as a UUID", MaxKeyLen))
		return "", v.Err()
	}
	return key, nil
}

// Place creates an order for userID. With a key, repeating the request returns the same order
// (replayed true) and reserves nothing more. A failure part-way leaves no order and no
// reservation behind.
func (s *Service) Place(ctx context.Context, userID uuid.UUID, token, key string, req NewOrder) (o Order, replayed bool, err error) {
	if err := req.Validate(); err != nil {
		return Order{}, false, err
	}
	orderID := uuid.New()
	if key != "" {
		claim, claimed, err := s.store.ClaimKey(ctx, Claim{UserID: userID, Key: key, RequestHash: req.hash(), OrderID: orderID, CreatedAt: now()})
		if err == nil && !claimed && now().Sub(claim.CreatedAt) >= s.keyTTL {
			// Outside the window the key is free again, whether or not the pruner got to it.
			if err = s.store.ExpireClaim(ctx, userID, key, now().Add(-s.keyTTL)); err == nil {
				claim, claimed, err = s.store.ClaimKey(ctx, Claim{UserID: userID, Key: key, RequestHash: req.hash(), OrderID: orderID, CreatedAt: now()})
			}
		}
		if err != nil {
			return Order{}, false, err
		}
		if !claimed {
			switch {
			case claim.RequestHash != req.hash():
				return Order{}, false, ErrKeyReused
			case claim.Completed:
				o, err := s.store.Get(ctx, userID, claim.OrderID)
				return o, true, err
			case now().Sub(claim.CreatedAt) < s.staleAfter:
				return Order{}, false, ErrKeyInProgress
			}
			// The request that claimed the key died part-way. Finish it under the same
			// order id: products returns the reservation it may already have made.
			orderID = claim.OrderID
		}
	}

	res, err := s.catalog.Reserve(ctx, token, orderID, req.Items)
	if err != nil {
		// A conflict or invalid request reserved nothing; anything else may have reached
		// products, so release to be sure.
		definite := errors.Is(err, fault.ErrConflict) || errors.Is(err, fault.ErrInvalid)
		s.undo(ctx, userID, token, key, orderID, !definite)
		return Order{}, false, err
	}
	s.faults.afterReserve()
	if res.ExpiresAt != nil && res.ExpiresAt.Sub(now()) < s.margin {
		// Finishing a claim whose reservation is almost spent: start over rather than store an
		// order whose stock may be released before it is confirmed.
		s.undo(ctx, userID, token, key, orderID, true)
		return Order{}, false, errReservationEnding
	}
	o = Order{ID: orderID, UserID: userID, Status: StatusConfirmed, CreatedAt: now()}
	for i, it := range res.Items {
		if i == 0 {
			o.Currency = it.Currency
		} else if it.Currency != o.Currency {
			s.undo(ctx, userID, token, key, orderID, true)
			return Order{}, false, ErrMixedCurrency
		}
		o.Items = append(o.Items, Item{ProductID: it.ProductID, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents})
		o.TotalCents += int64(it.Quantity) * it.UnitPriceCents
	}
	if err := s.store.CreateOrder(ctx, o, key); err != nil {
		if errors.Is(err, ErrOrderExists) { // a concurrent finisher of a stale claim stored it
			existing, gerr := s.store.Get(ctx, userID, orderID)
			return existing, true, gerr
		}
		// The commit may or may not have happened (a connection lost during COMMIT looks
		// like any other error): releasing now could give away the stock of a stored order.
		// Either way the reservation is pending: the reconciler confirms it if the order is
		// there, and products releases it at its expiry if not.
		s.undo(ctx, userID, token, key, orderID, false)
		return Order{}, false, fmt.Errorf("store order: %w", err)
	}
	s.confirm(ctx, orderID)
	return o, false, nil
}

// confirm tells products that orderID's reservation belongs to a stored order. A failure is
// logged and left to the reconciler.
func (s *Service) confirm(ctx context.Context, orderID uuid.UUID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.catalog.Confirm(ctx, orderID)
	if err == nil {
		err = s.store.MarkStockConfirmed(ctx, orderID)
	}
	if err != nil {
		s.logger.WarnContext(ctx, "confirming the reservation of a stored order; the reconciler will retry", "order_id", orderID, "error", err)
	}
}

// ReconcileStock confirms the reservations of stored orders that were not confirmed yet —
// after a crash between the commit and the confirmation, or a products outage — oldest first,
// up to 100 a run; it runs at start-up and then periodically, on every replica (confirming is
// idempotent). It returns how many it confirmed.
func (s *Service) ReconcileStock(ctx context.Context) (int64, error) {
	ids, err := s.store.Unconfirmed(ctx, now(), 100)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, id := range ids {
		err := s.catalog.Confirm(ctx, id)
		if errors.Is(err, ErrReservationGone) {
			// Orders or products were down for longer than the reservation's lifetime: the
			// stock went back before the order's confirmation reached products.
			s.logger.ErrorContext(ctx, "a stored order's reservation expired before it was confirmed; its stock is not held", "order_id", id)
			err = nil
		}
		if err != nil {
			return n, fmt.Errorf("confirm order %s: %w", id, err)
		}
		if err := s.store.MarkStockConfirmed(ctx, id); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// undo releases what a failed Place took: the reservation (when one may exist) and the key's
// claim, so that the client can retry. It runs even when the request was cancelled.
func (s *Service) undo(ctx context.Context, userID uuid.UUID, token, key string, orderID uuid.UUID, release bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if release {
		if err := s.catalog.Release(ctx, token, orderID); err != nil {
			// The claim stays, so a retry with the same key finishes or releases this order.
			s.logger.ErrorContext(ctx, "release reservation after failed order", "order_id", orderID, "error", err)
			return
		}
	}
	if key != "" {
		if err := s.store.DeleteClaim(ctx, userID, key); err != nil {
			s.logger.ErrorContext(ctx, "drop idempotency claim after failed order", "order_id", orderID, "error", err)
		}
	}
}

// Get returns one of the user's orders.
func (s *Service) Get(ctx context.Context, userID, id uuid.UUID) (Order, error) {
	return s.store.Get(ctx, userID, id)
}

// List returns a page of the user's orders, newest first.
func (s *Service) List(ctx context.Context, userID uuid.UUID, after *Cursor, limit int) ([]Order, error) {
	return s.store.List(ctx, userID, after, limit)
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
