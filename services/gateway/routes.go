package gateway

import (
	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/web"
)

// addRoutes lists the gateway's routes: its own health and metrics endpoints come from package
// web, /openapi.json is the public API its route table serves; every other path is matched
// against the route table.
func addRoutes(e *echo.Echo, g *Gateway) {
	e.GET("/openapi.json", web.Document(g.document))
	e.GET(g.guard.path, g.guard.refused) // the framing guard's refusals, at a path no client knows
	e.Any("/*", g.handle)
	e.Any("/", g.handle)
}
