package users

import (
	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
)

// addRoutes lists every route of the users service.
func addRoutes(e *echo.Echo, svc *Service, signer *jwtauth.Signer, verifier *jwtauth.Verifier) {
	e.POST("/users", handleRegister(svc))
	e.POST("/users/login", handleLogin(svc))
	e.GET("/users/me", handleMe(svc), jwtauth.Authenticate(verifier))
	e.GET("/.well-known/jwks.json", handleJWKS(signer))
}
