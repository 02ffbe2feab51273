package localshop

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/pgdb/pgtest"
	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
	"github.com/shopmesh/shopmesh/services/orders"
	"github.com/shopmesh/shopmesh/services/products"
	"github.com/shopmesh/shopmesh/services/scenario"
	"github.com/shopmesh/shopmesh/services/users"
)

// lockedBuffer collects the services' logs, written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type shop struct {
	users, products, orders, gateway string
	layout                           Layout
	logs                             *lockedBuffer // every service's log lines
}

// startShop runs `shopmesh run` on free loopback ports until the test ends, and checks that
// it then shuts down cleanly.
func startShop(t *testing.T, env map[string]string) shop {
	t.Helper()
	env["USERS_HTTP_ADDR"], env["PRODUCTS_HTTP_ADDR"], env["ORDERS_HTTP_ADDR"] = webtest.FreeAddr(t), webtest.FreeAddr(t), webtest.FreeAddr(t)
	env["GATEWAY_HTTP_ADDR"] = webtest.FreeAddr(t)
	env["USERS_HEALTH_ADDR"], env["PRODUCTS_HEALTH_ADDR"], env["ORDERS_HEALTH_ADDR"] = webtest.FreeAddr(t), webtest.FreeAddr(t), webtest.FreeAddr(t)
	env["SHOPMESH_PKI_DIR"] = filepath.Join(t.TempDir(), "pki")
	env["SHUTDOWN_TIMEOUT"] = "5s"
	layout, err := ReadLayout(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	t.Cleanup(func() {
		// Spare connections the client dialled but never used would hold each server's
		// graceful shutdown for Go's 5 s grace on new connections.
		http.DefaultClient.CloseIdleConnections()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("shopmesh run: %v", err)
			}
			if t.Failed() {
				t.Logf("logs:\n%s", logs)
			}
		case <-time.After(10 * time.Second):
			t.Error("shopmesh run did not stop within 10s of cancel")
		}
	})
	s := shop{layout.URL(layout.Users), layout.URL(layout.Products), layout.URL(layout.Orders), "http://" + layout.Gateway.Addr, layout, logs}
	for _, e := range append(layout.Services(), layout.Gateway) {
		waitReady(t, layout.ProbeURL(e), done, logs)
	}
	// Every exchange follows the API documents: the public API through the gateway, each
	// service's own on its port (when plain HTTP; under mTLS only peers reach them).
	for _, base := range []string{s.gateway, s.users, s.products, s.orders} {
		if strings.HasPrefix(base, "http://") {
			webtest.CheckServed(t, base)
		}
	}
	return s
}

func waitReady(t *testing.T, base string, done chan error, logs *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("shopmesh run exited: %v\nlogs:\n%s", err, logs)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not ready in 15s\nlogs:\n%s", base, logs)
}

// storageModes runs test against in-memory storage and against PostgreSQL. These tests call
// the services directly, so the services talk plain HTTP; the gateway tests keep mutual TLS.
func storageModes(t *testing.T, test func(t *testing.T, env map[string]string)) {
	t.Run("memory", func(t *testing.T) { test(t, map[string]string{"TLS_MODE": "off"}) })
	t.Run("postgres", func(t *testing.T) {
		url, schema := pgtest.Schema(t)
		_, s2 := pgtest.Schema(t)
		_, s3 := pgtest.Schema(t)
		test(t, map[string]string{"DATABASE_URL": url, "USERS_DATABASE_SCHEMA": schema,
			"PRODUCTS_DATABASE_SCHEMA": s2, "ORDERS_DATABASE_SCHEMA": s3,
			"ADMIN_EMAIL": "admin@example.com", "ADMIN_PASSWORD": "admin-password", "TLS_MODE": "off"})
	})
}

func adminCreds(env map[string]string) (string, string) {
	if env["ADMIN_EMAIL"] != "" {
		return env["ADMIN_EMAIL"], env["ADMIN_PASSWORD"]
	}
	return LocalAdminEmail, LocalAdminPassword
}

func login(t *testing.T, s shop, email, password string) string {
	t.Helper()
	r := webtest.Do(t, "POST", s.users+"/users/login", map[string]string{"email": email, "password": password})
	if r.Status != 200 {
		t.Fatalf("login %s: %d %s", email, r.Status, r.Body)
	}
	var tok users.Token
	r.Decode(t, &tok)
	return tok.AccessToken
}

func newCustomer(t *testing.T, s shop) string {
	t.Helper()
	email := uuid.NewString()[:8] + "@example.com"
	if r := webtest.Do(t, "POST", s.users+"/users", map[string]string{"email": email, "password": "password1", "name": "Customer"}); r.Status != 201 {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	return login(t, s, email, "password1")
}

func createProduct(t *testing.T, s shop, env map[string]string, stock int) products.Product {
	t.Helper()
	email, password := adminCreds(env)
	admin := login(t, s, email, password)
	r := webtest.Do(t, "POST", s.products+"/products",
		map[string]any{"name": "Limited Edition Mug", "price_cents": 1500, "currency": "USD", "stock": stock}, webtest.Bearer(admin)...)
	if r.Status != 201 {
		t.Fatalf("create product: %d %s", r.Status, r.Body)
	}
	var p products.Product
	r.Decode(t, &p)
	return p
}

func stockOf(t *testing.T, s shop, id uuid.UUID) int {
	t.Helper()
	var p products.Product
	webtest.Do(t, "GET", s.products+"/products/"+id.String(), nil).Decode(t, &p)
	return p.Stock
}

func orderBody(id uuid.UUID, qty int) map[string]any {
	return map[string]any{"items": []map[string]any{{"product_id": id, "quantity": qty}}}
}

// TestShopEndToEnd: register → login → list products → order → list orders.
func TestShopEndToEnd(t *testing.T) {
	storageModes(t, func(t *testing.T, env map[string]string) {
		s := startShop(t, env)
		token := newCustomer(t, s)

		var me struct{ Email string }
		webtest.Do(t, "GET", s.users+"/users/me", nil, webtest.Bearer(token)...).Decode(t, &me)
		if me.Email == "" {
			t.Fatal("GET /users/me returned no email")
		}

		var catalog web.Page[products.Product]
		webtest.Do(t, "GET", s.products+"/products?limit=5", nil).Decode(t, &catalog)
		if len(catalog.Items) != 5 || catalog.NextCursor == "" {
			t.Fatalf("seeded catalog page: %d items, next %q; want 5 and more", len(catalog.Items), catalog.NextCursor)
		}
		a, b := catalog.Items[0], catalog.Items[1]

		r := webtest.Do(t, "POST", s.orders+"/orders", map[string]any{"items": []map[string]any{
			{"product_id": a.ID, "quantity": 2}, {"product_id": b.ID, "quantity": 1}}}, webtest.Bearer(token)...)
		if r.Status != 201 {
			t.Fatalf("place order: %d %s", r.Status, r.Body)
		}
		var o orders.Order
		r.Decode(t, &o)
		if want := 2*a.PriceCents + b.PriceCents; o.TotalCents != want || o.Status != "confirmed" || len(o.Items) != 2 {
			t.Errorf("order = %+v, want total %d from catalog prices", o, want)
		}
		if got := stockOf(t, s, a.ID); got != a.Stock-2 {
			t.Errorf("stock of %s = %d, want %d", a.Name, got, a.Stock-2)
		}

		var mine web.Page[orders.Order]
		webtest.Do(t, "GET", s.orders+"/orders", nil, webtest.Bearer(token)...).Decode(t, &mine)
		if len(mine.Items) != 1 || mine.Items[0].ID != o.ID {
			t.Errorf("GET /orders = %+v, want the one order %s", mine.Items, o.ID)
		}
		if r := webtest.Do(t, "GET", s.orders+"/orders/"+o.ID.String(), nil, webtest.Bearer(newCustomer(t, s))...); r.Status != 404 {
			t.Errorf("another customer reads the order: %d, want 404", r.Status)
		}
	})
}

// TestNoOversellUnderConcurrentOrders: 50 concurrent orders of one unit for 10 in stock.
func TestNoOversellUnderConcurrentOrders(t *testing.T) {
	storageModes(t, func(t *testing.T, env map[string]string) {
		s := startShop(t, env)
		p := createProduct(t, s, env, 10)
		token := newCustomer(t, s)

		statuses := make(chan int, 50)
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses <- webtest.Do(t, "POST", s.orders+"/orders", orderBody(p.ID, 1), webtest.Bearer(token)...).Status
			}()
		}
		wg.Wait()
		close(statuses)
		count := map[int]int{}
		for st := range statuses {
			count[st]++
		}
		if count[201] != 10 || count[409] != 40 {
			t.Errorf("statuses %v; want exactly 10 × 201 and 40 × 409", count)
		}
		if got := stockOf(t, s, p.ID); got != 0 {
			t.Errorf("stock = %d, want 0", got)
		}
		var mine web.Page[orders.Order]
		webtest.Do(t, "GET", s.orders+"/orders?limit=100", nil, webtest.Bearer(token)...).Decode(t, &mine)
		if len(mine.Items) != 10 {
			t.Errorf("%d orders stored, want 10", len(mine.Items))
		}
	})
}

// TestIdempotentRetries: the same request 20 times with one key → one order, one reservation;
// sequentially every answer is that order, concurrently the rest are told to retry.
func TestIdempotentRetries(t *testing.T) {
	storageModes(t, func(t *testing.T, env map[string]string) {
		s := startShop(t, env)
		p := createProduct(t, s, env, 100)
		token := newCustomer(t, s)

		var first uuid.UUID
		for i := 0; i < 20; i++ {
			r := webtest.Do(t, "POST", s.orders+"/orders", orderBody(p.ID, 3), append(webtest.Bearer(token), "Idempotency-Key", "retry-seq")...)
			if r.Status != 201 {
				t.Fatalf("attempt %d: %d %s", i, r.Status, r.Body)
			}
			var o orders.Order
			r.Decode(t, &o)
			if i == 0 {
				first = o.ID
			} else if o.ID != first {
				t.Fatalf("attempt %d created order %s, want %s again", i, o.ID, first)
			}
		}

		statuses := make(chan int, 20)
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses <- webtest.Do(t, "POST", s.orders+"/orders", orderBody(p.ID, 3), append(webtest.Bearer(token), "Idempotency-Key", "retry-par")...).Status
			}()
		}
		wg.Wait()
		close(statuses)
		for st := range statuses {
			if st != 201 && st != 409 {
				t.Errorf("concurrent retry answered %d, want 201 or 409 (in progress)", st)
			}
		}

		var mine web.Page[orders.Order]
		webtest.Do(t, "GET", s.orders+"/orders", nil, webtest.Bearer(token)...).Decode(t, &mine)
		if len(mine.Items) != 2 {
			t.Errorf("%d orders for two keys, want 2", len(mine.Items))
		}
		if got := stockOf(t, s, p.ID); got != 100-2*3 {
			t.Errorf("stock = %d, want %d: one reservation per key", got, 100-2*3)
		}
		for _, o := range mine.Items {
			r := webtest.Do(t, "GET", s.products+"/reservations/"+o.ID.String(), nil, webtest.Bearer(token)...)
			if r.Status != 200 {
				t.Errorf("reservation for order %s: %d", o.ID, r.Status)
			}
		}
	})
}

// customerThroughTheGateway registers and logs in a customer, and finds an orderable product,
// as an outside client does: through the gateway only.
func customerThroughTheGateway(t *testing.T, s shop) (token string, product uuid.UUID) {
	t.Helper()
	token = newCustomer(t, shop{users: s.gateway, products: s.gateway, orders: s.gateway})
	var catalog web.Page[products.Product]
	webtest.Do(t, "GET", s.gateway+"/products?limit=1", nil).Decode(t, &catalog)
	if len(catalog.Items) != 1 {
		t.Fatalf("catalog through the gateway: %+v", catalog)
	}
	return token, catalog.Items[0].ID
}

// TestThroughTheGateway: the same flow as a client on the outside sees it, through the
// gateway only; internal paths are not routed.
func TestThroughTheGateway(t *testing.T) {
	s := startShop(t, map[string]string{})
	token, product := customerThroughTheGateway(t, s)
	r := webtest.Do(t, "POST", s.gateway+"/orders", orderBody(product, 1), webtest.Bearer(token)...)
	if r.Status != 201 || r.Header.Get("RateLimit-Policy") == "" {
		t.Fatalf("order through the gateway: %d %s (RateLimit-Policy %q)", r.Status, r.Body, r.Header.Get("RateLimit-Policy"))
	}
	if r := webtest.Do(t, "POST", s.gateway+"/orders", orderBody(product, 1)); r.Status != 401 {
		t.Errorf("order without a token through the gateway = %d, want 401", r.Status)
	}
	if r := webtest.Do(t, "POST", s.gateway+"/reservations", `{}`, webtest.Bearer(token)...); r.Status != 404 {
		t.Errorf("internal /reservations through the gateway = %d, want 404", r.Status)
	}
}

// TestRateLimitScenario runs the test plan at a tenth of its duration through the gateway.
func TestRateLimitScenario(t *testing.T) {
	s := startShop(t, map[string]string{})
	o := scenario.DefaultRateLimitOptions()
	o.Target, o.TimeScale = s.gateway, 0.1
	phases, err := scenario.RateLimit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	scenario.PrintRateLimit(&out, phases, o)
	t.Logf("\n%s", out.String())
	if len(phases) != 3 || !strings.Contains(out.String(), "overload") {
		t.Fatalf("report:\n%s", out.String())
	}
	normal, burst, overload := phases[0], phases[1], phases[2]
	if normal.Accepted() != normal.Sent || normal.Limited != 0 || normal.Sent != 50 {
		t.Errorf("normal phase: %+v, want all 50 accepted", normal)
	}
	// "At once" takes some milliseconds to dispatch; the bucket refills meanwhile.
	refilled := int(math.Ceil(o.LimitRate * burst.Elapsed.Seconds()))
	if burst.Accepted() < o.LimitBurst || burst.Accepted() > o.LimitBurst+refilled || burst.Limited == 0 {
		t.Errorf("burst phase accepted %d of %d in %v, want the burst of %d plus at most %d refilled", burst.Accepted(), burst.Sent, burst.Elapsed, o.LimitBurst, refilled)
	}
	ideal := overload.Ideal(o.LimitRate, o.LimitBurst)
	if d := overload.Accepted() - ideal; d < -3 || d > 3 || overload.Other+overload.Failed != 0 || overload.MissingRetryAfter != 0 {
		t.Errorf("overload phase: %+v; accepted %d, ideal %d", overload, overload.Accepted(), ideal)
	}
}

func mtlsOptions(l Layout) scenario.MTLSOptions {
	o := scenario.MTLSOptions{Gateway: "http://" + l.Gateway.Addr, PKIDir: l.PKIDir, Namespace: Namespace}
	for _, e := range l.Services() {
		o.Services = append(o.Services, scenario.Workload{Name: e.Name, Addr: e.Addr, Health: e.Health})
	}
	return o
}

// TestMTLSScenario: the whole shop with mutual TLS; the journey's hops are seen and every
// refusal happens the way the scenario expects.
func TestMTLSScenario(t *testing.T) {
	s := startShop(t, map[string]string{})
	var out bytes.Buffer
	err := scenario.MTLS(context.Background(), mtlsOptions(s.layout), &out)
	t.Logf("\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"users     spiffe://shopmesh/ns/shop/sa/users     gateway, orders, products",
		"gateway→orders", "orders→products",
		"no client certificate", "products counted no_client_certificate",
		"certificate from another CA", "products counted unknown_ca",
		"expired certificate", "products counted expired",
		"403 identity spiffe://shopmesh/ns/shop/sa/products is not allowed to call orders",
		"server identity is spiffe://shopmesh/ns/shop/sa/users, want spiffe://shopmesh/ns/shop/sa/products",
		"all expectations met",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "FAIL") {
		t.Error("a line failed")
	}
}

// TestMTLSScenarioFailsOnAWideAllowList: with products allowed to call orders, the scenario's
// 403 expectation fails and so does the command.
func TestMTLSScenarioFailsOnAWideAllowList(t *testing.T) {
	s := startShop(t, map[string]string{"ORDERS_TLS_ALLOWED_CALLERS": "gateway,products"})
	var out bytes.Buffer
	err := scenario.MTLS(context.Background(), mtlsOptions(s.layout), &out)
	if err == nil || !strings.Contains(out.String(), "FAIL  identity not on the allow-list") {
		t.Fatalf("err = %v, want a failed expectation; report:\n%s", err, out.String())
	}
}

// TestThroughTheLoopGateway: the shop with the gateway on its event-loop engine, under `make
// run`'s defaults (mutual TLS between the services: the loops hand those routes' connections
// to the net/http engine), and with plain HTTP between the services (as behind a mesh), when
// the loops serve every request themselves.
func TestThroughTheLoopGateway(t *testing.T) {
	for _, tc := range []struct{ name, tls string }{
		{"mutual TLS", ""},
		{"plain", "off"},
	} {
		t.Run(tc.name, func(t *testing.T) { testThroughTheLoopGateway(t, tc.tls) })
	}
}

// loggedByLoop reports whether a request line holding want was written by the loop engine.
func loggedByLoop(logs, want string) bool {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, want) && strings.Contains(line, `"engine":"loop"`) {
			return true
		}
	}
	return false
}

func testThroughTheLoopGateway(t *testing.T, tlsMode string) {
	const engine = "loop"
	env := map[string]string{"GATEWAY_GATEWAY_ENGINE": engine}
	if tlsMode != "" {
		env["TLS_MODE"] = tlsMode
	}
	s := startShop(t, env)
	token, product := customerThroughTheGateway(t, s)
	r := webtest.Do(t, "POST", s.gateway+"/orders", orderBody(product, 1), webtest.Bearer(token)...)
	if r.Status != 201 || r.Header.Get("RateLimit-Policy") == "" || r.Header.Get("X-Request-Id") == "" {
		t.Fatalf("order through the %s gateway: %d %s (headers %v)", engine, r.Status, r.Body, r.Header)
	}
	if !strings.Contains(s.logs.String(), `"engine":"loop","loops"`) {
		t.Errorf("the gateway did not run its %s engine", engine)
	}
	if tlsMode == "off" {
		// The loops write an answer before its bookkeeping: the log line may follow it a little.
		deadline := time.Now().Add(2 * time.Second)
		for !loggedByLoop(s.logs.String(), `"route":"orders-create","status":201`) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !loggedByLoop(s.logs.String(), `"route":"orders-create","status":201`) {
			t.Error("the order's request line is not the loop engine's: it was handed over, or not logged")
		}
	}
	if r := webtest.Do(t, "POST", s.gateway+"/orders", orderBody(product, 1)); r.Status != 401 {
		t.Errorf("order without a token = %d, want 401", r.Status)
	}
	if r := webtest.Do(t, "POST", s.gateway+"/reservations", `{}`, webtest.Bearer(token)...); r.Status != 404 {
		t.Errorf("internal /reservations = %d, want 404", r.Status)
	}
}
