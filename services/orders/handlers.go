package orders

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// caller returns the authenticated user's id and raw token.
func caller(c echo.Context) (uuid.UUID, string, error) {
	id, err := uuid.Parse(jwtauth.ClaimsFrom(c).Subject)
	if err != nil {
		return uuid.Nil, "", fault.New(fault.ErrUnauthenticated, "token subject is not a user id")
	}
	token, err := jwtauth.BearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
	return id, token, err
}

func handlePlace(svc *Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		userID, token, err := caller(c)
		if err != nil {
			return err
		}
		key, err := ParseIdempotencyKey(c.Request().Header.Get("Idempotency-Key"))
		if err != nil {
			return err
		}
		var req NewOrder
		if err := web.Bind(c, &req); err != nil {
			return err
		}
		o, replayed, err := svc.Place(c.Request().Context(), userID, token, key, req)
		if err != nil {
			return err
		}
		if replayed {
			c.Response().Header().Set("Idempotent-Replayed", "true")
		}
		c.Response().Header().Set(echo.HeaderLocation, "/orders/"+o.ID.String())
		return c.JSON(http.StatusCreated, o)
	}
}

func handleList(svc *Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		userID, _, err := caller(c)
		if err != nil {
			return err
		}
		limit, after, err := web.PageRequest(c, func(c Cursor) bool { return c.ID != uuid.Nil })
		if err != nil {
			return err
		}
		items, err := svc.List(c.Request().Context(), userID, after, limit+1)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, web.PageOf(items, limit, func(o Order) any { return Cursor{CreatedAt: o.CreatedAt, ID: o.ID} }))
	}
}

func handleGet(svc *Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		userID, _, err := caller(c)
		if err != nil {
			return err
		}
		id, err := uuid.Parse(c.Param("id"))
		if err != nil {
			return ErrOrderNotFound
		}
		o, err := svc.Get(c.Request().Context(), userID, id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, o)
	}
}
