package products

import (
	"time"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/mtls"
	"github.com/shopmesh/shopmesh/services/internal/pgdb"
	"github.com/shopmesh/shopmesh/services/internal/stockapi"
	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/pki"
)

// Config is the products service's configuration, read from the environment.
type Config struct {
	HTTP     web.Config
	TLS      mtls.Config
	Auth     jwtauth.VerifyConfig
	Database pgdb.Config
	SeedDemo bool // SEED_DEMO_CATALOG: add the demo catalog at start (idempotent)
	// RESERVATION_TTL: how long a reservation stays pending before its stock goes back, unless
	// orders confirms it; RESERVATION_SWEEP: how often expired ones are looked for.
	ReservationTTL   time.Duration
	ReservationSweep time.Duration
	ConfirmMargin    time.Duration // CONFIRM_MARGIN: orders' setting, read here to check the pair (stockapi.CheckTiming)
}

// LoadConfig reads and validates the configuration.
func LoadConfig(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{
		HTTP:             web.ReadConfig(r, "products", ":8082"),
		TLS:              mtls.ReadConfig(r, pki.AllowedCallers("products"), ":9082"),
		Auth:             jwtauth.ReadVerifyConfig(r),
		Database:         pgdb.ReadConfig(r, "products"),
		SeedDemo:         r.Bool("SEED_DEMO_CATALOG", true),
		ReservationTTL:   r.Duration("RESERVATION_TTL", stockapi.DefaultReservationTTL),
		ReservationSweep: r.Duration("RESERVATION_SWEEP", 30*time.Second),
		ConfirmMargin:    r.Duration("CONFIRM_MARGIN", stockapi.DefaultConfirmMargin),
	}
	if err := stockapi.CheckTiming(c.ReservationTTL, c.ConfirmMargin); err != nil {
		r.Fail("RESERVATION_TTL", "is too short for CONFIRM_MARGIN: %v", err)
	}
	c.TLS.CheckURL(r, "JWKS_URL", c.Auth.JWKSURL)
	return c, r.Err()
}
