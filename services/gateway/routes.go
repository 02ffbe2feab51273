package gateway

import "github.com/labstack/echo/v4"

// addRoutes lists the gateway's routes: its own health and metrics endpoints come from package
// web; every other path is matched against the route table.
func addRoutes(e *echo.Echo, g *Gateway) {
	e.Any("/*", g.handle)
	e.Any("/", g.handle)
}
