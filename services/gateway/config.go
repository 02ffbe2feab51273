package gateway

import (
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/mtls"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// Config is the gateway's configuration, read from the environment.
type Config struct {
	HTTP            web.Config
	TLS             mtls.Config // as a client of the upstreams; its own port stays plain HTTP behind the load balancer
	Auth            jwtauth.VerifyConfig
	RoutesFile      string         // ROUTES_FILE: YAML route table; empty uses the built-in shop routes
	UsersURL        string         // USERS_URL: upstream of the built-in routes
	ProductsURL     string         // PRODUCTS_URL
	OrdersURL       string         // ORDERS_URL
	UpstreamTimeout time.Duration  // UPSTREAM_TIMEOUT: until an upstream's response headers
	APIKeyHeader    string         // API_KEY_HEADER: rate-limit anonymous clients by this header
	TrustedProxies  []netip.Prefix // TRUSTED_PROXIES: CIDRs whose X-Forwarded-For is believed
	RedisURL        string         // REDIS_URL: share rate limits across replicas; empty limits in-process
	RedisAuth       string         // REDIS_AUTH: "" (the URL's password, if any) or iam (ElastiCache IAM authentication)
	RedisCacheName  string         // REDIS_CACHE_NAME: the ElastiCache replication group ID, for REDIS_AUTH=iam
	AWSRegion       string         // AWS_REGION: for REDIS_AUTH=iam
	FailOpen        bool           // RATE_LIMIT_FAIL_OPEN: without Redis, limit locally (true) or refuse (false)
	PprofAddr       string         // PPROF_ADDR: serve net/http/pprof here (keep it on loopback); empty: off
	Engine          string         // GATEWAY_ENGINE: nethttp (default) or loop (event loops over epoll, Linux)
	Loops           int            // GATEWAY_LOOPS: event loops of the loop engine; 0: one per GOMAXPROCS
	HeaderTimeout   time.Duration  // REQUEST_HEADER_TIMEOUT: a request head's first byte to its last; later is 408
	BodyMinRate     float64        // REQUEST_BODY_MIN_RATE: bytes/s a body must average after that long; slower is 408; 0: off
	LoginLimit      RateLimit      // LOGIN_RATE, LOGIN_BURST: POST /users/login per client address (built-in routes)
	SignupLimit     RateLimit      // SIGNUP_RATE, SIGNUP_BURST: POST /users per client address (built-in routes)
}

// LoadConfig reads and validates the configuration.
func LoadConfig(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{
		HTTP:            web.ReadConfig(r, "gateway", ":8080"),
		TLS:             mtls.ReadConfig(r, nil, ""),
		Auth:            jwtauth.ReadVerifyConfig(r),
		RoutesFile:      r.String("ROUTES_FILE", ""),
		UsersURL:        r.String("USERS_URL", "http://127.0.0.1:8081"),
		ProductsURL:     r.String("PRODUCTS_URL", "http://127.0.0.1:8082"),
		OrdersURL:       r.String("ORDERS_URL", "http://127.0.0.1:8083"),
		UpstreamTimeout: r.Duration("UPSTREAM_TIMEOUT", 10*time.Second),
		APIKeyHeader:    r.String("API_KEY_HEADER", ""),
		RedisURL:        r.String("REDIS_URL", ""),
		RedisAuth:       r.String("REDIS_AUTH", ""),
		RedisCacheName:  r.String("REDIS_CACHE_NAME", ""),
		AWSRegion:       r.String("AWS_REGION", ""),
		FailOpen:        r.Bool("RATE_LIMIT_FAIL_OPEN", true),
		PprofAddr:       r.String("PPROF_ADDR", ""),
		Engine:          r.String("GATEWAY_ENGINE", "nethttp"),
		Loops:           r.Int("GATEWAY_LOOPS", 0),
		HeaderTimeout:   r.Duration("REQUEST_HEADER_TIMEOUT", 10*time.Second),
		BodyMinRate:     r.Float("REQUEST_BODY_MIN_RATE", 1024),
		LoginLimit: RateLimit{Rate: r.Float("LOGIN_RATE", DefaultLoginLimit.Rate), Burst: r.Int("LOGIN_BURST", DefaultLoginLimit.Burst),
			By: LimitByAddress},
		SignupLimit: RateLimit{Rate: r.Float("SIGNUP_RATE", DefaultSignupLimit.Rate), Burst: r.Int("SIGNUP_BURST", DefaultSignupLimit.Burst),
			By: LimitByAddress},
	}
	for _, key := range []string{"LOGIN_RATE", "LOGIN_BURST", "SIGNUP_RATE", "SIGNUP_BURST"} {
		if c.RoutesFile != "" && getenv(key) != "" {
			r.Fail(key, "applies to the built-in routes only; with ROUTES_FILE set, give the limit under rate_limits in that file")
		}
	}
	for key, l := range map[string]RateLimit{"LOGIN": c.LoginLimit, "SIGNUP": c.SignupLimit} {
		if l.Rate <= 0 || l.Burst < 1 {
			r.Fail(key+"_RATE", "and %s_BURST must be positive (requests per second, and at once), got %v and %d", key, l.Rate, l.Burst)
		}
	}
	for key, v := range map[string]string{"USERS_URL": c.UsersURL, "PRODUCTS_URL": c.ProductsURL, "ORDERS_URL": c.OrdersURL} {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			r.Fail(key, "must be an http(s) URL, got %q", v)
		}
		if c.RoutesFile == "" { // the built-in routes use these
			c.TLS.CheckURL(r, key, v)
		}
	}
	c.TLS.CheckURL(r, "JWKS_URL", c.Auth.JWKSURL)
	switch c.Engine {
	case "nethttp", "loop":
	default:
		r.Fail("GATEWAY_ENGINE", "must be loop or nethttp, got %q (the fasthttp engine was removed: it framed requests otherwise than the other two)", c.Engine)
	}
	if c.HeaderTimeout < 100*time.Millisecond || c.HeaderTimeout > 10*time.Minute {
		r.Fail("REQUEST_HEADER_TIMEOUT", "must be from 100ms to 10m, got %s", c.HeaderTimeout)
	}
	if c.BodyMinRate < 0 {
		r.Fail("REQUEST_BODY_MIN_RATE", "must be 0 (off) or a rate in bytes per second, got %g", c.BodyMinRate)
	}
	if c.Loops < 0 || c.Loops > 256 {
		r.Fail("GATEWAY_LOOPS", "must be 0 (one loop per GOMAXPROCS) to 256, got %d", c.Loops)
	}
	switch c.RedisAuth {
	case "":
	case "iam":
		u, err := url.Parse(c.RedisURL)
		if err != nil || u.Scheme != "rediss" || u.User == nil || u.User.Username() == "" {
			r.Fail("REDIS_URL", "must be rediss://<user-id>@host:port with REDIS_AUTH=iam (IAM authentication needs TLS and the ElastiCache user ID)")
		} else if _, hasPassword := u.User.Password(); hasPassword {
			r.Fail("REDIS_URL", "must carry no password with REDIS_AUTH=iam: the password is a token signed at each connection")
		}
		if c.RedisCacheName == "" || strings.ToLower(c.RedisCacheName) != c.RedisCacheName {
			r.Fail("REDIS_CACHE_NAME", "must be the ElastiCache replication group ID, in lower case, with REDIS_AUTH=iam")
		}
		if c.AWSRegion == "" {
			r.Fail("AWS_REGION", "must be set with REDIS_AUTH=iam")
		}
	default:
		r.Fail("REDIS_AUTH", "must be empty or iam, got %q", c.RedisAuth)
	}
	for _, s := range r.List("TRUSTED_PROXIES") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			r.Fail("TRUSTED_PROXIES", "must list CIDRs such as 10.0.0.0/16, got %q", s)
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, p)
	}
	return c, r.Err()
}
