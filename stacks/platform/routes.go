package platform

import (
	"go.yaml.in/yaml/v3"
)

// RoutesFile is where the gateway's route table is mounted (its ROUTES_FILE).
const RoutesFile = "/etc/shopmesh/routes/routes.yaml"

// gatewayRoutes renders the in-cluster gateway's route table from the same configuration keys
// as API Gateway's throttles, so that the two cannot disagree: API Gateway enforces
// apiThrottle* and ordersThrottle* as totals for the stage, the gateway the same numbers per
// client (token subject, else address); login and sign-up have their own per-address limits.
// The routes are the gateway's built-in ones, pointed at the services in namespace ns.
func gatewayRoutes(cfg Config, ns string) string {
	type limit struct {
		Rate  float64 `yaml:"rate"`
		Burst int     `yaml:"burst"`
		By    string  `yaml:"by,omitempty"`
	}
	type upstream struct {
		URL string `yaml:"url"`
	}
	type route struct {
		Name      string     `yaml:"name"`
		Prefix    string     `yaml:"prefix"`
		Methods   []string   `yaml:"methods,omitempty"`
		Auth      string     `yaml:"auth"`
		RateLimit string     `yaml:"rate_limit,omitempty"`
		Upstreams []upstream `yaml:"upstreams"`
	}
	in := func(svc string) []upstream {
		return []upstream{{URL: "http://" + svc + "." + ns + ".svc.cluster.local"}}
	}
	table := struct {
		RateLimits map[string]limit `yaml:"rate_limits"`
		Routes     []route          `yaml:"routes"`
	}{
		RateLimits: map[string]limit{
			"default":       {Rate: float64(cfg.ApiThrottleRate), Burst: cfg.ApiThrottleBurst},
			"orders-create": {Rate: float64(cfg.OrdersThrottleRate), Burst: cfg.OrdersThrottleBurst},
			"login":         {Rate: float64(cfg.LoginPerMinute) / 60, Burst: cfg.LoginBurst, By: "address"},
			"signup":        {Rate: float64(cfg.SignupPerMinute) / 60, Burst: cfg.SignupBurst, By: "address"},
		},
		Routes: []route{
			{Name: "jwks", Prefix: "/.well-known/jwks.json", Auth: "none", Upstreams: in("users")},
			{Name: "users-login", Prefix: "/users/login", Methods: []string{"POST"}, Auth: "none", RateLimit: "login", Upstreams: in("users")},
			{Name: "users-signup", Prefix: "/users", Methods: []string{"POST"}, Auth: "none", RateLimit: "signup", Upstreams: in("users")},
			{Name: "users", Prefix: "/users", Auth: "optional", RateLimit: "default", Upstreams: in("users")},
			{Name: "products", Prefix: "/products", Auth: "optional", RateLimit: "default", Upstreams: in("products")},
			{Name: "orders-create", Prefix: "/orders", Methods: []string{"POST"}, Auth: "required", RateLimit: "orders-create", Upstreams: in("orders")},
			{Name: "orders", Prefix: "/orders", Auth: "required", RateLimit: "default", Upstreams: in("orders")},
		},
	}
	out, err := yaml.Marshal(table)
	if err != nil {
		panic(err) // plain structs of strings and numbers always marshal
	}
	return "# Rendered by the Pulumi program from Pulumi.<stack>.yaml; edit the stack's configuration, not this.\n" + string(out)
}
