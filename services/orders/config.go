package orders

import (
	"net/url"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/mtls"
	"github.com/shopmesh/shopmesh/services/internal/pgdb"
	"github.com/shopmesh/shopmesh/services/internal/stockapi"
	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/pki"
)

// Config is the orders service's configuration, read from the environment.
type Config struct {
	HTTP            web.Config
	TLS             mtls.Config
	Auth            jwtauth.VerifyConfig
	Database        pgdb.Config
	ProductsURL     string        // PRODUCTS_URL: base URL of the products service
	ProductsTimeout time.Duration // PRODUCTS_TIMEOUT: per call to products
	KeyTTL          time.Duration // IDEMPOTENCY_KEY_TTL: how long an Idempotency-Key answers with its order
	Reconcile       time.Duration // RECONCILE_INTERVAL: how often stored orders' reservations are confirmed
	ConfirmMargin   time.Duration // CONFIRM_MARGIN: the least reservation lifetime an order is stored with
	ReservationTTL  time.Duration // RESERVATION_TTL: products' setting, read here to check the pair (stockapi.CheckTiming)
	faults          faults
}

// LoadConfig reads and validates the configuration.
func LoadConfig(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{
		HTTP:            web.ReadConfig(r, "orders", ":8083"),
		TLS:             mtls.ReadConfig(r, pki.AllowedCallers("orders"), ":9083"),
		Auth:            jwtauth.ReadVerifyConfig(r),
		Database:        pgdb.ReadConfig(r, "orders"),
		ProductsURL:     r.String("PRODUCTS_URL", "http://127.0.0.1:8082"),
		ProductsTimeout: r.Duration("PRODUCTS_TIMEOUT", 5*time.Second),
		KeyTTL:          r.Duration("IDEMPOTENCY_KEY_TTL", DefaultKeyTTL),
		Reconcile:       r.Duration("RECONCILE_INTERVAL", 30*time.Second),
		ConfirmMargin:   r.Duration("CONFIRM_MARGIN", DefaultConfirmMargin),
		ReservationTTL:  r.Duration("RESERVATION_TTL", stockapi.DefaultReservationTTL),
		faults:          readFaults(r),
	}
	if err := stockapi.CheckTiming(c.ReservationTTL, c.ConfirmMargin); err != nil {
		r.Fail("CONFIRM_MARGIN", "does not fit RESERVATION_TTL: %v", err)
	}
	if u, err := url.Parse(c.ProductsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.Fail("PRODUCTS_URL", "must be an http(s) URL, got %q", c.ProductsURL)
	}
	c.TLS.CheckURL(r, "JWKS_URL", c.Auth.JWKSURL)
	c.TLS.CheckURL(r, "PRODUCTS_URL", c.ProductsURL)
	return c, r.Err()
}
