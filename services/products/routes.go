package products

import (
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// addRoutes lists every route of the products service.
func addRoutes(e *echo.Echo, store Store, verifier *jwtauth.Verifier, reservationTTL time.Duration, doc []byte) {
	e.GET("/openapi.json", web.Document(doc))
	authn := jwtauth.Authenticate(verifier)
	admin := jwtauth.RequireRole(jwtauth.RoleAdmin)

	e.GET("/products", handleList(store))
	e.GET("/products/:id", handleGet(store))
	e.POST("/products", handleCreate(store), authn, admin)
	e.PUT("/products/:id", handleUpdate(store), authn, admin)

	// Called by orders only: not routed by the gateway; the caller's workload identity is
	// checked by mutual TLS (TLS_ALLOWED_CALLERS) or, in the cluster, by the mesh. Reserving
	// and reading also need the customer's token; confirming and releasing are orders' own
	// housekeeping, which its reconciler does without a customer at hand.
	e.POST("/reservations", handleReserve(store, reservationTTL), authn)
	e.GET("/reservations/:order_id", handleGetReservation(store), authn)
	e.POST("/reservations/:order_id/confirm", handleConfirm(store))
	e.DELETE("/reservations/:order_id", handleRelease(store))
}
