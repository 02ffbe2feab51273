package jwtauth

import (
	"net/http"
	"net/url"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
)

// VerifyConfig is what a service that checks tokens needs to know.
type VerifyConfig struct {
	JWKSURL  string // JWKS_URL: the users service's key set
	Issuer   string // JWT_ISSUER
	Audience string // JWT_AUDIENCE
}

// Leeway absorbs clock skew between services when checking exp and nbf.
const Leeway = 30 * time.Second

// ReadVerifyConfig reads the token-verification settings.
func ReadVerifyConfig(r *envconf.Reader) VerifyConfig {
	c := VerifyConfig{
		JWKSURL:  r.String("JWKS_URL", "http://127.0.0.1:8081/.well-known/jwks.json"),
		Issuer:   r.String("JWT_ISSUER", "shopmesh-users"),
		Audience: r.String("JWT_AUDIENCE", "shopmesh"),
	}
	if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.Fail("JWKS_URL", "must be an http(s) URL, got %q", c.JWKSURL)
	}
	return c
}

// NewRemoteVerifier returns a verifier that fetches keys from c.JWKSURL with client.
func (c VerifyConfig) NewRemoteVerifier(client *http.Client) *Verifier {
	keys := NewRemoteJWKS(c.JWKSURL, client, 10*time.Second, 15*time.Minute)
	return NewVerifier(keys, c.Issuer, c.Audience, Leeway)
}
