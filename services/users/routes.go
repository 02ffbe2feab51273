package users

import (
	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// addRoutes lists every route of the users service.
func addRoutes(e *echo.Echo, svc *Service, signer *jwtauth.Signer, verifier *jwtauth.Verifier, doc []byte) {
	e.GET("/openapi.json", web.Document(doc))
	e.POST("/users", handleRegister(svc))
	e.POST("/users/login", handleLogin(svc))
	e.GET("/users/me", handleMe(svc), jwtauth.Authenticate(verifier))
	e.GET("/.well-known/jwks.json", handleJWKS(signer))
}
