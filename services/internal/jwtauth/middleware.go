package jwtauth

import (
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

const claimsKey = "jwtauth.claims"

// Authenticate requires a valid Bearer token and stores its claims for ClaimsFrom.
func Authenticate(v *Verifier) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			raw, err := BearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
			if err != nil {
				return err
			}
			claims, err := v.Verify(c.Request().Context(), raw)
			if err != nil {
				return err
			}
			c.Set(claimsKey, claims)
			return next(c)
		}
	}
}

// RequireRole answers 403 unless the authenticated token grants role. Use after Authenticate.
func RequireRole(role string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if cl := ClaimsFrom(c); cl == nil || !cl.HasRole(role) {
				return fault.New(fault.ErrForbidden, "this action needs the "+role+" role")
			}
			return next(c)
		}
	}
}

// ClaimsFrom returns the claims Authenticate stored, or nil.
func ClaimsFrom(c echo.Context) *Claims {
	cl, _ := c.Get(claimsKey).(*Claims)
	return cl
}

// BearerToken extracts the token from an Authorization header value.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", fault.New(fault.ErrUnauthenticated, "send an access token in the Authorization: Bearer header")
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", fault.New(fault.ErrUnauthenticated, "the Authorization header must be \"Bearer <token>\"")
	}
	return strings.TrimSpace(token), nil
}
