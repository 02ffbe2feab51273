package rehearsal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"
)

// caller is a client of the shop on an address of its own (127.0.N.n), as distinct customers
// on the internet are. N is drawn per rehearsal: the limits are kept in Redis by address, and a
// later rehearsal must not find the budgets an earlier one spent.
type caller struct {
	addr string
	http *http.Client
	base string
}

func (r *rehearsal) caller(n int) *caller {
	ip := net.IPv4(127, 0, r.clientNet, byte(n))
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	return &caller{addr: ip.String(), base: r.api.URL(), http: &http.Client{Timeout: 35 * time.Second, Transport: &http.Transport{
		DialContext: d.DialContext, MaxIdleConnsPerHost: 64,
	}}}
}

type answer struct {
	status int
	body   []byte
	header http.Header
}

func (c *caller) do(ctx context.Context, method, path string, body any, headers ...string) (answer, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: b, header: resp.Header}, nil
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s", a.status, strings.TrimSpace(string(a.body[:min(len(a.body), 300)])))
}

// customer signs a new customer up and logs in, returning the access token.
func (c *caller) customer(ctx context.Context) (email, token string, err error) {
	email = "rehearsal-" + uuid.NewString()[:8] + "@example.com"
	a, err := c.do(ctx, "POST", "/users", map[string]string{"email": email, "password": "rehearsal-password", "name": "Rehearsal"})
	if err != nil || a.status != http.StatusCreated {
		return "", "", fmt.Errorf("sign-up: %v %v", a, err)
	}
	token, err = c.login(ctx, email)
	return email, token, err
}

func (c *caller) login(ctx context.Context, email string, headers ...string) (string, error) {
	a, err := c.do(ctx, "POST", "/users/login", map[string]string{"email": email, "password": "rehearsal-password"}, headers...)
	if err != nil || a.status != http.StatusOK {
		return "", fmt.Errorf("login: %v %v", a, err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(a.body, &tok)
	return tok.AccessToken, nil
}

// limits reads the gateway's rate limits from the route table it is given.
func (r *rehearsal) limits() (map[string]Throttle, error) {
	gw, err := r.s.Workload("gateway")
	if err != nil {
		return nil, err
	}
	file := gw.Files[gw.Env["ROUTES_FILE"]]
	var table struct {
		RateLimits map[string]struct {
			Rate  float64 `yaml:"rate"`
			Burst int     `yaml:"burst"`
		} `yaml:"rate_limits"`
	}
	if err := yaml.Unmarshal([]byte(file), &table); err != nil {
		return nil, fmt.Errorf("the gateway's route table (ROUTES_FILE %s): %w", gw.Env["ROUTES_FILE"], err)
	}
	out := map[string]Throttle{}
	for k, v := range table.RateLimits {
		out[k] = Throttle{Rate: v.Rate, Burst: v.Burst}
	}
	return out, nil
}

// orderScenario: a customer signs up, logs in, finds a product and orders it, through the front.
func orderScenario(ctx context.Context, r *rehearsal) []Divergence {
	div := func(problem, fix string) []Divergence { return []Divergence{{"order", problem, fix}} }
	c := r.caller(1)
	_, token, err := c.customer(ctx)
	if err != nil {
		return div("a new customer cannot sign up and log in through API Gateway: "+err.Error(), "the users service's ConfigMap and the users/users-login routes")
	}
	product, err := r.aProduct(ctx, c)
	if err != nil {
		return div(err.Error(), "the products ConfigMap (DATABASE_*, SEED_DEMO_CATALOG)")
	}
	bearer := []string{"Authorization", "Bearer " + token}
	a, err := c.do(ctx, "POST", "/orders", map[string]any{"items": []map[string]any{{"product_id": product, "quantity": 1}}},
		append(bearer, "Idempotency-Key", uuid.NewString())...)
	if err != nil || a.status != http.StatusCreated {
		return div(fmt.Sprintf("POST /orders answered %v %v", a, err),
			"the orders and products ConfigMaps (RESERVATION_TTL, CONFIRM_MARGIN, PRODUCTS_URL, DATABASE_*): see the orders pods' logs")
	}
	var order struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	_ = json.Unmarshal(a.body, &order)
	got, err := c.do(ctx, "GET", "/orders/"+order.ID, nil, bearer...)
	if err != nil || got.status != http.StatusOK {
		return div(fmt.Sprintf("the order just placed, GET /orders/%s, answered %v %v", order.ID, got, err), "the orders route and ConfigMap")
	}
	fmt.Fprintf(r.out, "  order %s placed and read back (%s) by a customer at %s\n", order.ID, order.Status, c.addr)
	return nil
}

// aProduct is a product with stock: the demo catalog's, or, where the stack seeds none (prod),
// one put into the products schema as an operator's catalog import would.
func (r *rehearsal) aProduct(ctx context.Context, c *caller) (string, error) {
	a, err := c.do(ctx, "GET", "/products?limit=20", nil)
	if err != nil || a.status != http.StatusOK {
		return "", fmt.Errorf("GET /products answered %v %v", a, err)
	}
	var page struct {
		Items []struct {
			ID    string `json:"id"`
			Stock int    `json:"stock"`
		} `json:"items"`
	}
	_ = json.Unmarshal(a.body, &page)
	for _, p := range page.Items {
		if p.Stock > 10 {
			return p.ID, nil
		}
	}
	products, err := r.s.Workload("products")
	if err != nil {
		return "", err
	}
	u := *r.pgAdmin
	u.Path = "/" + r.db
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	id := uuid.NewString()
	schema := pgx.Identifier{products.Env["DATABASE_SCHEMA"], "products"}.Sanitize()
	if _, err := conn.Exec(ctx, "INSERT INTO "+schema+" (id, name, description, price_cents, currency, stock, created_at, updated_at) VALUES ($1, 'Rehearsal mug', '', 1200, 'EUR', 1000, now(), now())", id); err != nil {
		return "", fmt.Errorf("no product in the catalog, and none could be imported: %w", err)
	}
	fmt.Fprintf(r.out, "  the stack seeds no catalog (SEED_DEMO_CATALOG=%s): one product imported into %s\n", products.Env["SEED_DEMO_CATALOG"], schema)
	return id, nil
}

// burst sends n requests at once from c and counts the answers by status.
func burst(ctx context.Context, n int, send func() (answer, error)) (accepted, limited int, other []string, elapsed time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := send()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				other = append(other, err.Error())
			case a.status < 300:
				accepted++
			case a.status == http.StatusTooManyRequests:
				limited++
			default:
				other = append(other, a.String())
			}
		}()
	}
	wg.Wait()
	return accepted, limited, other, time.Since(start)
}

// sharedLimitScenario: one client signs up many times at once; the requests are spread over
// every gateway replica, and the whole stack accepts burst + rate × time, not that per replica.
func sharedLimitScenario(ctx context.Context, r *rehearsal) []Divergence {
	limits, err := r.limits()
	if err != nil {
		return []Divergence{{"shared-limit", err.Error(), "the gateway-routes ConfigMap"}}
	}
	l, ok := limits["signup"]
	if !ok {
		return []Divergence{{"shared-limit", "the route table has no signup limit", "the gateway-routes ConfigMap (rate_limits.signup)"}}
	}
	c := r.caller(2)
	replicas := len(r.pods["gateway"])
	n := (replicas + 1) * l.Burst
	accepted, limited, other, elapsed := burst(ctx, n, func() (answer, error) {
		return c.do(ctx, "POST", "/users", map[string]string{"email": "rehearsal-" + uuid.NewString()[:8] + "@example.com", "password": "rehearsal-password", "name": "R"})
	})
	most := l.Burst + int(math.Ceil(l.Rate*elapsed.Seconds()))
	fmt.Fprintf(r.out, "  %d sign-ups at once from %s over %d gateways: %d accepted, %d limited (limit: burst %d, %.3g/s; at most %d in %.1fs)\n",
		n, c.addr, replicas, accepted, limited, l.Burst, l.Rate, most, elapsed.Seconds())
	var ds []Divergence
	if len(other) > 0 {
		ds = append(ds, Divergence{"shared-limit", fmt.Sprintf("%d sign-ups failed otherwise: %s", len(other), other[0]), "the users and gateway pods' logs"})
	}
	if accepted > most {
		ds = append(ds, Divergence{"shared-limit", fmt.Sprintf("%d of %d sign-ups from one address were accepted, want at most %d: the %d gateway replicas do not share one limit",
			accepted, n, most, replicas),
			"the rate-limit cache: its user's access string (aws:elasticache/user:User accessString) must let the limiter's script run; the gateway's REDIS_URL/REDIS_AUTH"})
	}
	if accepted < l.Burst {
		ds = append(ds, Divergence{"shared-limit", fmt.Sprintf("only %d of %d sign-ups were accepted, want the whole burst of %d", accepted, n, l.Burst),
			"the rate-limit cache and the gateway-routes ConfigMap (rate_limits.signup)"})
	}
	return ds
}

// clientAddressScenario: logins are limited per client address. One client spends its budget;
// another address still has its own; a client claiming the spent address in X-Forwarded-For
// still gets its own; the spent client claiming a fresh address still gets none.
func clientAddressScenario(ctx context.Context, r *rehearsal) []Divergence {
	limits, err := r.limits()
	if err != nil {
		return []Divergence{{"client-address", err.Error(), "the gateway-routes ConfigMap"}}
	}
	l := limits["login"]
	setup := r.caller(3)
	email, _, err := setup.customer(ctx)
	if err != nil {
		return []Divergence{{"client-address", "no customer to log in as: " + err.Error(), "the users service"}}
	}
	time.Sleep(time.Duration(float64(time.Second) / math.Max(l.Rate, 0.1))) // setup's own login spent a token of 127.0.1.3 only
	spender, other, forger := r.caller(4), r.caller(5), r.caller(6)
	login := func(c *caller, headers ...string) (answer, error) {
		return c.do(ctx, "POST", "/users/login", map[string]string{"email": email, "password": "rehearsal-password"}, headers...)
	}
	start := time.Now()
	accepted, limited, errs, _ := burst(ctx, l.Burst+5, func() (answer, error) { return login(spender) })
	fmt.Fprintf(r.out, "  %d logins at once from %s: %d accepted, %d limited (login limit: burst %d, %.3g/s per address)\n",
		l.Burst+5, spender.addr, accepted, limited, l.Burst, l.Rate)
	var ds []Divergence
	address := "API Gateway's integrations must set X-Forwarded-For from context.identity.sourceIp (aws:apigateway/integration:Integration requestParameters), and the gateway must believe it from its sidecar only (gateway ConfigMap TRUSTED_PROXIES)"
	if limited == 0 || len(errs) > 0 {
		ds = append(ds, Divergence{"client-address", fmt.Sprintf("%d logins from one address: %d limited, errors %v: want the burst of %d and then 429", l.Burst+5, limited, errs, l.Burst),
			"the gateway-routes ConfigMap (rate_limits.login) and the rate-limit cache"})
		return ds
	}
	// At once, right away: whatever the bucket holds now is at most what came back since the
	// burst began (burst + rate × time − accepted), and an escape takes more than that.
	const tries = 5
	var fresh atomic.Int32
	escaped, _, _, _ := burst(ctx, tries, func() (answer, error) {
		return login(spender, "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", 10+fresh.Add(1)))
	})
	back := max(0, l.Burst+int(math.Ceil(l.Rate*time.Since(start).Seconds()))-accepted)
	if escaped > back {
		ds = append(ds, Divergence{"client-address", fmt.Sprintf("%s, its budget spent, had %d of %d logins accepted by sending X-Forwarded-For with a fresh address (at most %d could have come back)",
			spender.addr, escaped, tries, back), address})
	}
	if a, err := login(other); err != nil || a.status != http.StatusOK {
		ds = append(ds, Divergence{"client-address", fmt.Sprintf("a customer at %s, after %s spent its login budget, was answered %v %v on its first login: the gateway sees one address for every caller",
			other.addr, spender.addr, a, err), address})
	}
	if a, err := login(forger, "X-Forwarded-For", spender.addr); err != nil || a.status != http.StatusOK {
		ds = append(ds, Divergence{"client-address", fmt.Sprintf("a customer at %s that sent X-Forwarded-For: %s was answered %v %v: a client's own header chose whose budget it spends",
			forger.addr, spender.addr, a, err), address})
	}
	return ds
}

// rolloutScenario: the gateway Deployment is restarted the way its strategy says (one new pod
// ready and healthy in the NLB before an old one goes; preStop, SIGTERM, drain) while a client
// keeps ordering the catalog; no request may fail.
func rolloutScenario(ctx context.Context, r *rehearsal) []Divergence {
	w, err := r.s.Workload("gateway")
	if err != nil {
		return []Divergence{{"rollout", err.Error(), "the gateway Deployment"}}
	}
	c := r.caller(7)
	var sent, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 { // four clients in a loop: a steady load on every replica
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, err := c.do(ctx, "GET", "/products?limit=1", nil)
				sent.Add(1)
				if err != nil || a.status != http.StatusOK {
					failed.Add(1)
					mu.Lock()
					if len(failures) < 5 {
						failures = append(failures, fmt.Sprint(a, err))
					}
					mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	var ds []Divergence
	old := append([]*pod(nil), r.pods["gateway"]...)
	for i, p := range old {
		np, err := r.startReplica(ctx, w, len(old)+i)
		if err == nil {
			err = r.registerTarget(ctx, np)
		}
		if err != nil {
			ds = append(ds, Divergence{"rollout", "a new gateway pod did not come up: " + err.Error(), "the gateway Deployment and ConfigMap"})
			break
		}
		// Terminating: the endpoint goes (the NLB deregisters it; its open connections stay),
		// while the kubelet runs preStop, then SIGTERM.
		r.nlb.Deregister(r.sidecars[p].Addr())
		if err := p.stop(); err != nil {
			ds = append(ds, Divergence{"rollout", fmt.Sprintf("%s did not stop cleanly: %v", p.name, err), "SHUTDOWN_DRAIN, SHUTDOWN_TIMEOUT, preStop and terminationGracePeriodSeconds of the gateway Deployment"})
		}
		r.mu.Lock()
		for j, q := range r.pods["gateway"] {
			if q == p {
				r.pods["gateway"] = append(r.pods["gateway"][:j], r.pods["gateway"][j+1:]...)
				break
			}
		}
		r.mu.Unlock()
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	fmt.Fprintf(r.out, "  rolled %d gateway pods (preStop %s, then SIGTERM) under %d requests: %d failed\n", len(old), w.PreStop, sent.Load(), failed.Load())
	if failed.Load() > 0 {
		ds = append(ds, Divergence{"rollout", fmt.Sprintf("%d of %d requests failed while the gateways rolled, e.g. %s", failed.Load(), sent.Load(), strings.Join(failures, "; ")),
			"the gateway Deployment's preStop and terminationGracePeriodSeconds, its SHUTDOWN_DRAIN/SHUTDOWN_TIMEOUT, and the NLB target group's deregistration"})
	}
	return ds
}

// cacheOutageScenario: the rate-limit cache goes away. The gateways stay ready and keep
// serving (each limits on its own meanwhile: fail-open); when it is back they share it again.
func cacheOutageScenario(ctx context.Context, r *rehearsal) []Divergence {
	c := r.caller(8)
	var ds []Divergence
	r.cache.Outage()
	failed, sent := 0, 0
	var first string
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		a, err := c.do(ctx, "GET", "/products?limit=1", nil)
		sent++
		if err != nil || a.status != http.StatusOK {
			failed++
			if first == "" {
				first = fmt.Sprint(a, err)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	notReady := r.unready()
	r.cache.Restore()
	fmt.Fprintf(r.out, "  cache down for 3s: %d of %d requests failed; gateways not ready: %v\n", failed, sent, notReady)
	if failed > 0 {
		ds = append(ds, Divergence{"cache-outage", fmt.Sprintf("%d of %d requests failed while the rate-limit cache was down, e.g. %s", failed, sent, first),
			"the gateway's limiter must fail open (RATE_LIMIT_FAIL_OPEN) when the cache does not answer"})
	}
	if len(notReady) > 0 {
		ds = append(ds, Divergence{"cache-outage", fmt.Sprintf("gateway pods %v reported not ready while the cache was down: an outage of the cache would take the shop down", notReady),
			"the gateway's readiness must fail only when the cache answers and refuses the limiter, not when it is unreachable"})
	}
	// Back: the shared limit holds again before the next scenario.
	deadline = time.Now().Add(10 * time.Second)
	for len(r.unready()) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	return ds
}

// unready lists the gateway pods whose readiness probe does not answer 200.
func (r *rehearsal) unready() []string {
	var out []string
	client := &http.Client{Timeout: 2 * time.Second}
	for _, p := range r.pods["gateway"] {
		resp, err := client.Get("http://" + p.addr + p.w.Readiness)
		if err == nil {
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			out = append(out, p.name)
		}
	}
	return out
}
