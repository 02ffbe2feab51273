package orders

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopmesh/shopmesh/services/internal/pgdb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations are the schema's versioned migrations.
func Migrations() fs.FS { return pgdb.Dir(migrationFiles, "migrations") }

// PostgresStore keeps orders in PostgreSQL.
type PostgresStore struct{ pool *pgxpool.Pool }

// NewPostgresStore returns a store over pool, whose search path is the orders schema.
func NewPostgresStore(pool *pgxpool.Pool) *PostgresStore { return &PostgresStore{pool: pool} }

func (s *PostgresStore) ClaimKey(ctx context.Context, c Claim) (Claim, bool, error) {
	// Concurrent claims of one key wait on the primary key; exactly one inserts.
	tag, err := s.pool.Exec(ctx, `INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, key) DO NOTHING`,
		c.UserID, c.Key, c.RequestHash, c.OrderID, c.CreatedAt)
	if err != nil {
		return Claim{}, false, fmt.Errorf("claim idempotency key: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return c, true, nil
	}
	existing := Claim{UserID: c.UserID, Key: c.Key}
	err = s.pool.QueryRow(ctx, `SELECT request_hash, order_id, completed, created_at FROM idempotency_keys
		WHERE user_id = $1 AND key = $2`, c.UserID, c.Key).
		Scan(&existing.RequestHash, &existing.OrderID, &existing.Completed, &existing.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) { // dropped between the two statements: claim again
		return s.ClaimKey(ctx, c)
	}
	if err != nil {
		return Claim{}, false, fmt.Errorf("read idempotency key: %w", err)
	}
	return existing, false, nil
}

func (s *PostgresStore) DeleteClaim(ctx context.Context, userID uuid.UUID, key string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND NOT completed`, userID, key)
	if err != nil {
		return fmt.Errorf("drop idempotency key: %w", err)
	}
	return nil
}

func (s *PostgresStore) ExpireClaim(ctx context.Context, userID uuid.UUID, key string, before time.Time) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND created_at < $3`, userID, key, before); err != nil {
		return fmt.Errorf("expire idempotency key: %w", err)
	}
	return nil
}

// ExpireClaims deletes one batch; rows another replica is deleting are skipped, not waited for.
func (s *PostgresStore) ExpireClaims(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE (user_id, key) IN (
		SELECT user_id, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("expire idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (s *PostgresStore) CreateOrder(ctx context.Context, o Order, key string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders (id, user_id, status, total_cents, currency, created_at, stock_confirmed)
			VALUES ($1, $2, $3, $4, $5, $6, false)`, o.ID, o.UserID, o.Status, o.TotalCents, o.Currency, o.CreatedAt); err != nil {
			return err
		}
		for _, it := range o.Items {
			if _, err := tx.Exec(ctx, `INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
				VALUES ($1, $2, $3, $4)`, o.ID, it.ProductID, it.Quantity, it.UnitPriceCents); err != nil {
				return err
			}
		}
		if key != "" {
			if _, err := tx.Exec(ctx, `UPDATE idempotency_keys SET completed = true WHERE user_id = $1 AND key = $2`, o.UserID, key); err != nil {
				return err
			}
		}
		return nil
	})
	if pgdb.IsUniqueViolation(err, "orders_pkey") {
		return ErrOrderExists
	}
	if err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	return nil
}

const orderColumns = `id, user_id, status, total_cents, currency, created_at`

func scanOrder(row pgx.Row) (Order, error) {
	var o Order
	err := row.Scan(&o.ID, &o.UserID, &o.Status, &o.TotalCents, &o.Currency, &o.CreatedAt)
	o.CreatedAt = o.CreatedAt.UTC()
	return o, err
}

func (s *PostgresStore) Get(ctx context.Context, userID, id uuid.UUID) (Order, error) {
	o, err := scanOrder(s.pool.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1 AND user_id = $2`, id, userID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Order{}, ErrOrderNotFound
	}
	if err != nil {
		return Order{}, fmt.Errorf("get order: %w", err)
	}
	orders := []Order{o}
	if err := s.loadItems(ctx, orders); err != nil {
		return Order{}, err
	}
	return orders[0], nil
}

func (s *PostgresStore) List(ctx context.Context, userID uuid.UUID, after *Cursor, limit int) ([]Order, error) {
	var rows pgx.Rows
	var err error
	if after == nil {
		rows, err = s.pool.Query(ctx, `SELECT `+orderColumns+` FROM orders WHERE user_id = $1
			ORDER BY created_at DESC, id DESC LIMIT $2`, userID, limit)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+orderColumns+` FROM orders WHERE user_id = $1
			AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4`,
			userID, after.CreatedAt, after.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	if err := s.loadItems(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// loadItems fills in the items of orders with one query.
func (s *PostgresStore) loadItems(ctx context.Context, orders []Order) error {
	if len(orders) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(orders))
	index := make(map[uuid.UUID]int, len(orders))
	for i, o := range orders {
		ids[i], index[o.ID] = o.ID, i
	}
	rows, err := s.pool.Query(ctx, `SELECT order_id, product_id, quantity, unit_price_cents FROM order_items
		WHERE order_id = ANY($1) ORDER BY order_id, product_id`, ids)
	if err != nil {
		return fmt.Errorf("load order items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var it Item
		if err := rows.Scan(&id, &it.ProductID, &it.Quantity, &it.UnitPriceCents); err != nil {
			return fmt.Errorf("load order items: %w", err)
		}
		orders[index[id]].Items = append(orders[index[id]].Items, it)
	}
	return rows.Err()
}

func (s *PostgresStore) MarkStockConfirmed(ctx context.Context, id uuid.UUID) error {
	if _, err := s.pool.Exec(ctx, `UPDATE orders SET stock_confirmed = true WHERE id = $1`, id); err != nil {
		return fmt.Errorf("mark order %s confirmed: %w", id, err)
	}
	return nil
}

func (s *PostgresStore) Unconfirmed(ctx context.Context, before time.Time, limit int) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM orders WHERE NOT stock_confirmed AND created_at < $1 ORDER BY created_at LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("unconfirmed orders: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("unconfirmed orders: %w", err)
	}
	return ids, nil
}
