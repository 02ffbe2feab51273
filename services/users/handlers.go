package users

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

type userResponse struct {
	ID        uuid.UUID `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
}

func toResponse(u User) userResponse {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return userResponse{ID: u.ID, Email: u.Email, Name: u.Name, Roles: roles, CreatedAt: u.CreatedAt}
}

func handleRegister(svc *Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req Registration
		if err := web.Bind(c, &req); err != nil {
			return err
		}
		u, err := svc.Register(c.Request().Context(), req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, toResponse(u))
	}
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (r *loginRequest) Validate() error {
	var v fault.Validation
	v.Check(r.Email != "", "email", "is required")
	v.Check(r.Password != "", "password", "is required")
	return v.Err()
}

func handleLogin(svc *Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req loginRequest
		if err := web.Bind(c, &req); err != nil {
			return err
		}
		tok, err := svc.Login(c.Request().Context(), req.Email, req.Password)
		if err != nil {
			return err
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusOK, tok)
	}
}

func handleMe(svc *Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := uuid.Parse(jwtauth.ClaimsFrom(c).Subject)
		if err != nil {
			return fault.New(fault.ErrUnauthenticated, "token subject is not a user id")
		}
		u, err := svc.Get(c.Request().Context(), id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, toResponse(u))
	}
}

func handleJWKS(signer *jwtauth.Signer) echo.HandlerFunc {
	jwks := signer.JWKS()
	return func(c echo.Context) error {
		// Short enough that a newly published key reaches verifiers quickly.
		c.Response().Header().Set("Cache-Control", "public, max-age=300")
		return c.JSON(http.StatusOK, jwks)
	}
}
