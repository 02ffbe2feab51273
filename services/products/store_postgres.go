package products

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

// PostgresStore keeps the catalog in PostgreSQL.
type PostgresStore struct{ pool *pgxpool.Pool }

// NewPostgresStore returns a store over pool, whose search path is the products schema.
func NewPostgresStore(pool *pgxpool.Pool) *PostgresStore { return &PostgresStore{pool: pool} }

const productColumns = `id, name, description, price_cents, currency, stock, created_at, updated_at`

func scanProduct(row pgx.Row) (Product, error) {
	var p Product
	err := row.Scan(&p.ID, &p.Name, &p.Description, &p.PriceCents, &p.Currency, &p.Stock, &p.CreatedAt, &p.UpdatedAt)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

func (s *PostgresStore) List(ctx context.Context, after *Cursor, limit int) ([]Product, error) {
	var rows pgx.Rows
	var err error
	if after == nil {
		rows, err = s.pool.Query(ctx, `SELECT `+productColumns+` FROM products
			ORDER BY name COLLATE "C", id LIMIT $1`, limit)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+productColumns+` FROM products
			WHERE (name COLLATE "C", id) > ($1 COLLATE "C", $2::uuid)
			ORDER BY name COLLATE "C", id LIMIT $3`, after.Name, after.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Product, error) { return scanProduct(r) })
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return out, nil
}

func (s *PostgresStore) Get(ctx context.Context, id uuid.UUID) (Product, error) {
	p, err := scanProduct(s.pool.QueryRow(ctx, `SELECT `+productColumns+` FROM products WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Product{}, ErrProductNotFound
	}
	if err != nil {
		return Product{}, fmt.Errorf("get product: %w", err)
	}
	return p, nil
}

func (s *PostgresStore) Create(ctx context.Context, p Product) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO products (`+productColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		p.ID, p.Name, p.Description, p.PriceCents, p.Currency, p.Stock, p.CreatedAt, p.UpdatedAt)
	if err != nil {
		return fmt.Errorf("insert product: %w", err)
	}
	return nil
}

func (s *PostgresStore) Update(ctx context.Context, p Product) (Product, error) {
	out, err := scanProduct(s.pool.QueryRow(ctx, `UPDATE products
		SET name = $2, description = $3, price_cents = $4, currency = $5, stock = $6, updated_at = $7
		WHERE id = $1 RETURNING `+productColumns,
		p.ID, p.Name, p.Description, p.PriceCents, p.Currency, p.Stock, p.UpdatedAt))
	if errors.Is(err, pgx.ErrNoRows) {
		return Product{}, ErrProductNotFound
	}
	if err != nil {
		return Product{}, fmt.Errorf("update product: %w", err)
	}
	return out, nil
}

func (s *PostgresStore) Seed(ctx context.Context, ps []Product) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, p := range ps {
			tag, err := tx.Exec(ctx, `INSERT INTO products (`+productColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (id) DO NOTHING`,
				p.ID, p.Name, p.Description, p.PriceCents, p.Currency, p.Stock, p.CreatedAt, p.UpdatedAt)
			if err != nil {
				return err
			}
			n += int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("seed catalog: %w", err)
	}
	return n, nil
}

func (s *PostgresStore) Reserve(ctx context.Context, orderID uuid.UUID, lines []Line, at, expiresAt time.Time) (Reservation, bool, error) {
	var (
		res     Reservation
		created bool
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A concurrent Reserve for the same order waits here on the primary key until the
		// first one commits or rolls back.
		tag, err := tx.Exec(ctx, `INSERT INTO reservations (order_id, created_at, status, expires_at) VALUES ($1, $2, 'pending', $3)
			ON CONFLICT (order_id) DO NOTHING`, orderID, at, expiresAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			existing, err := getReservation(ctx, tx, orderID)
			if err != nil {
				return err
			}
			if !sameLines(existing, lines) {
				return ErrReservationMismatch
			}
			res = existing
			return nil
		}
		res = Reservation{OrderID: orderID, Status: StatusPending, CreatedAt: at, ExpiresAt: &expiresAt}
		for _, l := range sortLines(lines) {
			var item ReservedLine
			// The guard in WHERE makes the check and the decrement one atomic step.
			err := tx.QueryRow(ctx, `UPDATE products SET stock = stock - $2, updated_at = $3
				WHERE id = $1 AND stock >= $2 RETURNING price_cents, currency`,
				l.ProductID, l.Quantity, at).Scan(&item.UnitPriceCents, &item.Currency)
			if errors.Is(err, pgx.ErrNoRows) {
				var stock int
				if err := tx.QueryRow(ctx, `SELECT stock FROM products WHERE id = $1`, l.ProductID).Scan(&stock); errors.Is(err, pgx.ErrNoRows) {
					return UnknownProductError(l.ProductID)
				} else if err != nil {
					return err
				}
				return InsufficientStockError(l.ProductID, l.Quantity, stock)
			}
			if err != nil {
				return err
			}
			item.ProductID, item.Quantity = l.ProductID, l.Quantity
			if _, err := tx.Exec(ctx, `INSERT INTO reservation_items (order_id, product_id, quantity, unit_price_cents, currency)
				VALUES ($1, $2, $3, $4, $5)`, orderID, item.ProductID, item.Quantity, item.UnitPriceCents, item.Currency); err != nil {
				return err
			}
			res.Items = append(res.Items, item)
		}
		created = true
		return nil
	})
	if err != nil {
		return Reservation{}, false, fmt.Errorf("reserve stock for order %s: %w", orderID, err)
	}
	return res, created, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func getReservation(ctx context.Context, q querier, orderID uuid.UUID) (Reservation, error) {
	r := Reservation{OrderID: orderID}
	err := q.QueryRow(ctx, `SELECT created_at, status, expires_at FROM reservations WHERE order_id = $1`, orderID).Scan(&r.CreatedAt, &r.Status, &r.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Reservation{}, ErrReservationNotFound
	}
	if err != nil {
		return Reservation{}, err
	}
	r.CreatedAt = r.CreatedAt.UTC()
	if r.ExpiresAt != nil {
		t := r.ExpiresAt.UTC()
		r.ExpiresAt = &t
	}
	rows, err := q.Query(ctx, `SELECT product_id, quantity, unit_price_cents, currency FROM reservation_items
		WHERE order_id = $1 ORDER BY product_id`, orderID)
	if err != nil {
		return Reservation{}, err
	}
	r.Items, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ReservedLine])
	return r, err
}

func (s *PostgresStore) GetReservation(ctx context.Context, orderID uuid.UUID) (Reservation, error) {
	r, err := getReservation(ctx, s.pool, orderID)
	if err != nil && !errors.Is(err, ErrReservationNotFound) {
		return Reservation{}, fmt.Errorf("get reservation: %w", err)
	}
	return r, err
}

func (s *PostgresStore) Confirm(ctx context.Context, orderID uuid.UUID) (Reservation, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE reservations SET status = 'confirmed', expires_at = NULL WHERE order_id = $1`, orderID)
	if err != nil {
		return Reservation{}, fmt.Errorf("confirm reservation for order %s: %w", orderID, err)
	}
	if tag.RowsAffected() == 0 {
		return Reservation{}, ErrReservationNotFound
	}
	return s.GetReservation(ctx, orderID)
}

// ExpirePending releases one batch of expired pending reservations in one transaction. The
// rows are locked as they are chosen and rows another replica holds are skipped, so replicas
// running it at once never release one reservation twice.
func (s *PostgresStore) ExpirePending(ctx context.Context, now time.Time, limit int) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT order_id FROM reservations WHERE status = 'pending' AND expires_at < $1
			ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := releaseIn(ctx, tx, id); err != nil {
				return err
			}
		}
		n = int64(len(ids))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("expire pending reservations: %w", err)
	}
	return n, nil
}

func (s *PostgresStore) Release(ctx context.Context, orderID uuid.UUID) (bool, error) {
	released := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var status string
		err := tx.QueryRow(ctx, `SELECT status FROM reservations WHERE order_id = $1 FOR UPDATE`, orderID).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if status == StatusConfirmed {
			return ErrReservationConfirmed
		}
		released = true
		return releaseIn(ctx, tx, orderID)
	})
	if errors.Is(err, ErrReservationConfirmed) {
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("release reservation for order %s: %w", orderID, err)
	}
	return released, nil
}

// releaseIn gives a reservation's stock back and deletes it, in tx.
func releaseIn(ctx context.Context, tx pgx.Tx, orderID uuid.UUID) error {
	rows, err := tx.Query(ctx, `DELETE FROM reservation_items WHERE order_id = $1 RETURNING product_id, quantity`, orderID)
	if err != nil {
		return err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Line])
	if err != nil {
		return err
	}
	for _, l := range sortLines(lines) {
		if _, err := tx.Exec(ctx, `UPDATE products SET stock = stock + $2 WHERE id = $1`, l.ProductID, l.Quantity); err != nil {
			return err
		}
	}
	_, err = tx.Exec(ctx, `DELETE FROM reservations WHERE order_id = $1`, orderID)
	return err
}
