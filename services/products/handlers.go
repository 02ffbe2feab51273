package products

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/web"
)

func handleList(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		limit, after, err := web.PageRequest(c, func(c Cursor) bool { return c.ID != uuid.Nil })
		if err != nil {
			return err
		}
		// One extra row tells whether there is a next page.
		items, err := store.List(c.Request().Context(), after, limit+1)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, web.PageOf(items, limit, func(p Product) any { return Cursor{Name: p.Name, ID: p.ID} }))
	}
}

// pathID parses a UUID path parameter; anything else names no resource.
func pathID(c echo.Context, name string, notFound error) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param(name))
	if err != nil {
		return uuid.Nil, notFound
	}
	return id, nil
}

func handleGet(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := pathID(c, "id", ErrProductNotFound)
		if err != nil {
			return err
		}
		p, err := store.Get(c.Request().Context(), id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, p)
	}
}

func handleCreate(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		var in ProductInput
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		t := now()
		p := Product{ID: uuid.New(), Name: in.Name, Description: in.Description, PriceCents: *in.PriceCents,
			Currency: in.Currency, Stock: *in.Stock, CreatedAt: t, UpdatedAt: t}
		if err := store.Create(c.Request().Context(), p); err != nil {
			return err
		}
		c.Response().Header().Set(echo.HeaderLocation, "/products/"+p.ID.String())
		return c.JSON(http.StatusCreated, p)
	}
}

func handleUpdate(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := pathID(c, "id", ErrProductNotFound)
		if err != nil {
			return err
		}
		var in ProductInput
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		p, err := store.Update(c.Request().Context(), Product{ID: id, Name: in.Name, Description: in.Description,
			PriceCents: *in.PriceCents, Currency: in.Currency, Stock: *in.Stock, UpdatedAt: now()})
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, p)
	}
}

func handleReserve(store Store, ttl time.Duration) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req ReservationRequest
		if err := web.Bind(c, &req); err != nil {
			return err
		}
		at := now()
		r, created, err := store.Reserve(c.Request().Context(), req.OrderID, req.Items, at, at.Add(ttl))
		if err != nil {
			return err
		}
		status := http.StatusOK // the reservation this order already held
		if created {
			status = http.StatusCreated
		}
		return c.JSON(status, r)
	}
}

func handleGetReservation(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := pathID(c, "order_id", ErrReservationNotFound)
		if err != nil {
			return err
		}
		r, err := store.GetReservation(c.Request().Context(), id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, r)
	}
}

func handleConfirm(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := pathID(c, "order_id", ErrReservationNotFound)
		if err != nil {
			return err
		}
		// Confirming twice is fine: orders retries until it hears back.
		r, err := store.Confirm(c.Request().Context(), id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, r)
	}
}

func handleRelease(store Store) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := pathID(c, "order_id", ErrReservationNotFound)
		if err != nil {
			return err
		}
		// Releasing twice, or releasing nothing, is fine: compensation must be retryable.
		if _, err := store.Release(c.Request().Context(), id); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}
