// Package gateway is the platform's single entry point: it routes by path prefix and method to
// weighted upstreams, checks JWTs, rate-limits per client, rewrites paths and headers, and
// proxies over pooled connections.
package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Auth modes of a route.
const (
	AuthNone     = "none"     // no token is checked; identity headers are stripped
	AuthOptional = "optional" // a token, if sent, must be valid
	AuthRequired = "required" // a valid token is needed
)

// Table is the gateway's configuration of routes and rate-limit policies.
type Table struct {
	RateLimits map[string]RateLimit `yaml:"rate_limits"`
	Routes     []Route              `yaml:"routes"`
}

// RateLimit is a token bucket per client: Rate tokens per second, up to Burst at once.
type RateLimit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
	// By names the client: "client" (the default) is the token's subject, else the API key,
	// else the address; "address" is always the address, for routes such as login where a
	// caller could otherwise pick a fresh key for every try.
	By string `yaml:"by"`
}

// Ways to name the client a rate limit counts.
const (
	LimitByClient  = "client"
	LimitByAddress = "address"
)

// Route sends requests whose path starts with Prefix (and whose method is in Methods, when
// given) to one of Upstreams, chosen by weight.
type Route struct {
	Name      string     `yaml:"name"`
	Prefix    string     `yaml:"prefix"`
	Methods   []string   `yaml:"methods"`
	Upstreams []Upstream `yaml:"upstreams"`
	// RewritePrefix replaces Prefix in the upstream path when set ("" keeps the path).
	RewritePrefix *string `yaml:"rewrite_prefix"`
	Auth          string  `yaml:"auth"`
	RateLimit     string  `yaml:"rate_limit"`
	Request       Headers `yaml:"request_headers"`
	Response      Headers `yaml:"response_headers"`
	// Upgrades are the protocols a client may switch this route's connections to (Upgrade,
	// RFC 9110 §7.8), such as websocket. Any other Upgrade is ignored: the request goes on as
	// plain HTTP/1.1. h2c is never allowed: its tunnel would carry requests the gateway never reads.
	Upgrades []string `yaml:"upgrades"`
	// BodyLimitBytes is the largest request body the route accepts; 0: BODY_LIMIT_BYTES.
	BodyLimitBytes int64 `yaml:"body_limit_bytes"`

	line int
}

// Upstream is one target of a route with its share of the traffic.
type Upstream struct {
	URL    string `yaml:"url"`
	Weight int    `yaml:"weight"`
	// Identity is the workload identity an https upstream must present when the gateway runs
	// with TLS_MODE=mtls: a service name in the gateway's namespace, or a SPIFFE ID.
	Identity string `yaml:"identity"`

	target *url.URL
}

// Headers to set and to remove.
type Headers struct {
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

// LoadTable reads a route file; errors name the file and line.
func LoadTable(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("route file: %w", err)
	}
	t, err := ParseTable(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseTable parses and validates a route table.
func ParseTable(data []byte) (*Table, error) {
	var doc struct {
		RateLimits map[string]RateLimit `yaml:"rate_limits"`
		Routes     []yaml.Node          `yaml:"routes"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w", err) // yaml.v3 errors say "line N: …"
	}
	t := &Table{RateLimits: doc.RateLimits}
	for i := range doc.Routes {
		node := &doc.Routes[i]
		// Node.Decode ignores KnownFields, so unknown keys are checked here, with their line.
		if err := checkKeys(node, reflect.TypeOf(Route{})); err != nil {
			return nil, err
		}
		var r Route
		if err := node.Decode(&r); err != nil {
			return nil, err
		}
		r.line = node.Line
		t.Routes = append(t.Routes, r)
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// checkKeys reports the first mapping key in node that typ has no yaml field for.
func checkKeys(node *yaml.Node, typ reflect.Type) error {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
	}
	switch {
	case node.Kind == yaml.SequenceNode:
		for _, item := range node.Content {
			if err := checkKeys(item, typ); err != nil {
				return err
			}
		}
		return nil
	case node.Kind != yaml.MappingNode || typ.Kind() != reflect.Struct:
		return nil
	}
	fields := map[string]reflect.Type{}
	for i := 0; i < typ.NumField(); i++ {
		if tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			fields[tag] = typ.Field(i).Type
		}
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		key := node.Content[i]
		ft, ok := fields[key.Value]
		if !ok {
			return fmt.Errorf("line %d: unknown key %q; known keys are %s", key.Line, key.Value, strings.Join(sortedNames(fields), ", "))
		}
		if err := checkKeys(node.Content[i+1], ft); err != nil {
			return err
		}
	}
	return nil
}

func sortedNames(m map[string]reflect.Type) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (t *Table) validate() error {
	if len(t.Routes) == 0 {
		return errors.New("no routes: the file must list at least one under routes")
	}
	for name, rl := range t.RateLimits {
		if rl.Rate <= 0 || rl.Burst < 1 {
			return fmt.Errorf("rate limit %q: rate must be > 0 and burst >= 1, got rate %v burst %d", name, rl.Rate, rl.Burst)
		}
		switch rl.By {
		case "":
			rl.By = LimitByClient
			t.RateLimits[name] = rl
		case LimitByClient, LimitByAddress:
		default:
			return fmt.Errorf("rate limit %q: by must be client or address, got %q", name, rl.By)
		}
	}
	names := map[string]int{}
	for i := range t.Routes {
		r := &t.Routes[i]
		fail := func(format string, args ...any) error {
			return fmt.Errorf("line %d: route %q: %s", r.line, r.Name, fmt.Sprintf(format, args...))
		}
		switch {
		case r.Name == "":
			return fmt.Errorf("line %d: route needs a name", r.line)
		case names[r.Name] != 0:
			return fail("name already used at line %d", names[r.Name])
		case !strings.HasPrefix(r.Prefix, "/"):
			return fail("prefix must start with /, got %q", r.Prefix)
		case len(r.Upstreams) == 0:
			return fail("needs at least one upstream")
		}
		names[r.Name] = r.line
		if r.Auth == "" {
			r.Auth = AuthNone
		}
		if r.Auth != AuthNone && r.Auth != AuthOptional && r.Auth != AuthRequired {
			return fail("auth must be none, optional or required, got %q", r.Auth)
		}
		if r.RateLimit != "" {
			if _, ok := t.RateLimits[r.RateLimit]; !ok {
				return fail("rate_limit %q is not defined under rate_limits", r.RateLimit)
			}
		}
		for j, m := range r.Methods {
			r.Methods[j] = strings.ToUpper(m)
			switch r.Methods[j] {
			case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
			default:
				return fail("unknown method %q", m)
			}
		}
		if r.BodyLimitBytes < 0 {
			return fail("body_limit_bytes must be positive (or left out for BODY_LIMIT_BYTES), got %d", r.BodyLimitBytes)
		}
		for _, p := range r.Upgrades {
			switch {
			case strings.EqualFold(p, "h2c"):
				return fail("upgrades: h2c cannot be allowed: the gateway would stop reading the requests its tunnel carries")
			case !validToken(p):
				return fail("upgrades: %q is not a protocol name (a token such as websocket)", p)
			}
		}
		if r.RewritePrefix != nil && !strings.HasPrefix(*r.RewritePrefix, "/") {
			return fail("rewrite_prefix must start with /, got %q", *r.RewritePrefix)
		}
		total := 0
		for k := range r.Upstreams {
			u := &r.Upstreams[k]
			target, err := url.Parse(u.URL)
			if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
				return fail("upstream %q is not an http(s) URL", u.URL)
			}
			if len(r.Upstreams) == 1 && u.Weight == 0 {
				u.Weight = 100
			}
			if u.Weight < 0 {
				return fail("upstream %s: weight must not be negative", u.URL)
			}
			u.target = target
			total += u.Weight
		}
		if total == 0 {
			return fail("upstream weights add up to 0")
		}
	}
	// Longest prefix first, so /orders with POST beats /orders, and /users/me beats /users.
	sort.SliceStable(t.Routes, func(i, j int) bool {
		if len(t.Routes[i].Prefix) != len(t.Routes[j].Prefix) {
			return len(t.Routes[i].Prefix) > len(t.Routes[j].Prefix)
		}
		return len(t.Routes[i].Methods) > len(t.Routes[j].Methods)
	})
	return nil
}

// Match returns the route for method and path, or nil.
func (t *Table) Match(method, path string) *Route {
	for i := range t.Routes {
		r := &t.Routes[i]
		if !hasPathPrefix(path, r.Prefix) {
			continue
		}
		if len(r.Methods) == 0 {
			return r
		}
		for _, m := range r.Methods {
			if m == method || (m == http.MethodGet && method == http.MethodHead) {
				return r
			}
		}
	}
	return nil
}

// hasPathPrefix matches whole path segments: /orders matches /orders and /orders/1, not /ordersx.
func hasPathPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// Built-in limits of the login and sign-up routes, per client address: enough for people
// who mistype, too few for guessing passwords or creating accounts in bulk.
var (
	DefaultLoginLimit  = RateLimit{Rate: 1, Burst: 10, By: LimitByAddress}
	DefaultSignupLimit = RateLimit{Rate: 0.1, Burst: 5, By: LimitByAddress}
)

// DefaultTable routes the shop: users, products, orders and the JWKS, with the original test
// plan's limit on POST /orders (100 requests/s, burst 20) and per-address limits on login and
// sign-up.
func DefaultTable(usersURL, productsURL, ordersURL string, login, signup RateLimit) *Table {
	one := func(u string) []Upstream { return []Upstream{{URL: u, Weight: 100}} }
	users, products, orders := one(usersURL), one(productsURL), one(ordersURL)
	users[0].Identity, products[0].Identity, orders[0].Identity = "users", "products", "orders"
	post := []string{http.MethodPost}
	t := &Table{
		RateLimits: map[string]RateLimit{
			"orders-create": {Rate: 100, Burst: 20},
			"default":       {Rate: 50, Burst: 100},
			"login":         login,
			"signup":        signup,
		},
		Routes: []Route{
			{Name: "jwks", Prefix: "/.well-known/jwks.json", Upstreams: users, Auth: AuthNone},
			{Name: "users-login", Prefix: "/users/login", Methods: post, Upstreams: users, Auth: AuthNone, RateLimit: "login"},
			{Name: "users-signup", Prefix: "/users", Methods: post, Upstreams: users, Auth: AuthNone, RateLimit: "signup"},
			{Name: "users", Prefix: "/users", Upstreams: users, Auth: AuthOptional, RateLimit: "default"},
			{Name: "products", Prefix: "/products", Upstreams: products, Auth: AuthOptional, RateLimit: "default"},
			{Name: "orders-create", Prefix: "/orders", Methods: post, Upstreams: orders, Auth: AuthRequired, RateLimit: "orders-create"},
			{Name: "orders", Prefix: "/orders", Upstreams: orders, Auth: AuthRequired, RateLimit: "default"},
		},
	}
	if err := t.validate(); err != nil {
		panic(err) // the built-in table is fixed at compile time
	}
	return t
}
