package users

import (
	"runtime"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
	"github.com/shopmesh/shopmesh/services/internal/mtls"
	"github.com/shopmesh/shopmesh/services/internal/pgdb"
	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/pki"
)

// Config is the users service's configuration, read from the environment.
type Config struct {
	HTTP           web.Config
	TLS            mtls.Config
	Database       pgdb.Config
	SigningKeyFile string        // JWT_SIGNING_KEY_FILE: Ed25519 PKCS #8 PEM; empty generates one
	ExtraKeyFiles  []string      // JWT_EXTRA_PUBLIC_KEY_FILES: more public keys to publish (rotation)
	Issuer         string        // JWT_ISSUER
	Audience       string        // JWT_AUDIENCE
	TokenTTL       time.Duration // JWT_TTL
	AdminEmail     string        // ADMIN_EMAIL: admin account created at start if missing
	AdminPassword  string        // ADMIN_PASSWORD: its password (secret; never logged)
	Limits         Limits        // PASSWORD_CHECKS, PASSWORD_CHECK_WAIT, LOGIN_MAX_FAILURES, LOGIN_FAILURE_WINDOW, LOGIN_LOCK
}

// LoadConfig reads and validates the configuration.
func LoadConfig(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{
		HTTP:           web.ReadConfig(r, "users", ":8081"),
		TLS:            mtls.ReadConfig(r, pki.AllowedCallers("users"), ":9081"),
		Database:       pgdb.ReadConfig(r, "users"),
		SigningKeyFile: r.String("JWT_SIGNING_KEY_FILE", ""),
		ExtraKeyFiles:  r.List("JWT_EXTRA_PUBLIC_KEY_FILES"),
		Issuer:         r.String("JWT_ISSUER", "shopmesh-users"),
		Audience:       r.String("JWT_AUDIENCE", "shopmesh"),
		TokenTTL:       r.Duration("JWT_TTL", 15*time.Minute),
		AdminEmail:     r.String("ADMIN_EMAIL", ""),
		AdminPassword:  getenv("ADMIN_PASSWORD"),
		Limits: Limits{
			PasswordChecks: r.Int("PASSWORD_CHECKS", runtime.GOMAXPROCS(0)),
			PasswordWait:   r.Duration("PASSWORD_CHECK_WAIT", time.Second),
			Login: LoginPolicy{
				MaxFailures: r.Int("LOGIN_MAX_FAILURES", DefaultLoginPolicy.MaxFailures),
				Window:      r.Duration("LOGIN_FAILURE_WINDOW", DefaultLoginPolicy.Window),
				Lock:        r.Duration("LOGIN_LOCK", DefaultLoginPolicy.Lock),
			},
		},
	}
	if c.Limits.PasswordChecks < 1 {
		r.Fail("PASSWORD_CHECKS", "must be at least 1, got %d", c.Limits.PasswordChecks)
	}
	if c.Limits.Login.MaxFailures < 1 {
		r.Fail("LOGIN_MAX_FAILURES", "must be at least 1, got %d", c.Limits.Login.MaxFailures)
	}
	if c.AdminEmail != "" {
		if !validEmail(c.AdminEmail) {
			r.Fail("ADMIN_EMAIL", "must be a valid email address")
		}
		if len(c.AdminPassword) < MinPasswordLen {
			r.Fail("ADMIN_PASSWORD", "must be set to at least %d characters when ADMIN_EMAIL is set", MinPasswordLen)
		}
	}
	return c, r.Err()
}
