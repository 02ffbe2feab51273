package products

import (
	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
)

// addRoutes lists every route of the products service.
func addRoutes(e *echo.Echo, store Store, verifier *jwtauth.Verifier) {
	authn := jwtauth.Authenticate(verifier)
	admin := jwtauth.RequireRole(jwtauth.RoleAdmin)

	e.GET("/products", handleList(store))
	e.GET("/products/:id", handleGet(store))
	e.POST("/products", handleCreate(store), authn, admin)
	e.PUT("/products/:id", handleUpdate(store), authn, admin)

	// Called by orders with the customer's token. Not routed by the gateway; in the cluster,
	// network policy and the mesh admit only orders.
	e.POST("/reservations", handleReserve(store), authn)
	e.GET("/reservations/:order_id", handleGetReservation(store), authn)
	e.DELETE("/reservations/:order_id", handleRelease(store), authn)
}
