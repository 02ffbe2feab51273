package orders

import (
	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// addRoutes lists every route of the orders service; all of them act for the token's user.
func addRoutes(e *echo.Echo, svc *Service, verifier *jwtauth.Verifier, doc []byte) {
	e.GET("/openapi.json", web.Document(doc))
	authn := jwtauth.Authenticate(verifier)
	e.POST("/orders", handlePlace(svc), authn)
	e.GET("/orders", handleList(svc), authn)
	e.GET("/orders/:id", handleGet(svc), authn)
}
