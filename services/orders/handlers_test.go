package orders

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth/jwtauthtest"
	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
	"github.com/shopmesh/shopmesh/services/products"
)

type fixture struct {
	orders, products  string
	alice, bob, admin string
	mug               products.Product
	productsServer    *httptest.Server
}

// start runs real products and orders servers on loopback with one token issuer.
func start(t *testing.T) *fixture {
	t.Helper()
	iss := jwtauthtest.Start(t)
	env := map[string]string{"JWKS_URL": iss.JWKSURL, "SEED_DEMO_CATALOG": "false"}

	pts := webtest.Start(t, env, products.LoadConfig, products.NewServer)
	webtest.CheckServer(t, pts) // orders' calls to products are checked too
	env["PRODUCTS_URL"] = pts.URL
	ots := webtest.Start(t, env, LoadConfig, NewServer)
	webtest.CheckServer(t, ots)

	f := &fixture{orders: ots.URL, products: pts.URL, productsServer: pts,
		alice: iss.Token(t, uuid.NewString()), bob: iss.Token(t, uuid.NewString()), admin: iss.Token(t, uuid.NewString(), "admin")}
	r := webtest.Do(t, "POST", pts.URL+"/products", `{"name":"Mug","price_cents":1200,"currency":"USD","stock":5}`, webtest.Bearer(f.admin)...)
	if r.Status != 201 {
		t.Fatalf("create product: %d %s", r.Status, r.Body)
	}
	r.Decode(t, &f.mug)
	return f
}

func (f *fixture) stock(t *testing.T) int {
	t.Helper()
	var p products.Product
	webtest.Do(t, "GET", f.products+"/products/"+f.mug.ID.String(), nil).Decode(t, &p)
	return p.Stock
}

func orderBody(id uuid.UUID, qty int) map[string]any {
	return map[string]any{"items": []map[string]any{{"product_id": id, "quantity": qty}}}
}

func TestPlaceOrder(t *testing.T) {
	f := start(t)
	hdr := func(tok string, more ...string) []string { return append(webtest.Bearer(tok), more...) }

	tests := []struct {
		name       string
		body       any
		header     []string
		wantStatus int
		wantStock  int // stock after the request
	}{
		{"placed", orderBody(f.mug.ID, 2), hdr(f.alice, "Idempotency-Key", "k1"), 201, 3},
		{"replayed with the same key", orderBody(f.mug.ID, 2), hdr(f.alice, "Idempotency-Key", "k1"), 201, 3},
		{"same key other body", orderBody(f.mug.ID, 1), hdr(f.alice, "Idempotency-Key", "k1"), 422, 3},
		{"out of stock", orderBody(f.mug.ID, 4), hdr(f.alice), 409, 3},
		{"unknown product", orderBody(uuid.New(), 1), hdr(f.alice), 422, 3},
		{"no items", map[string]any{"items": []any{}}, hdr(f.alice), 422, 3},
		{"client sends a price", `{"items":[{"product_id":"` + f.mug.ID.String() + `","quantity":1,"unit_price_cents":1}]}`, hdr(f.alice), 400, 3},
		{"malformed", `{"items":[`, hdr(f.alice), 400, 3},
		{"bad key", orderBody(f.mug.ID, 1), hdr(f.alice, "Idempotency-Key", "has space"), 422, 3},
		{"no token", orderBody(f.mug.ID, 1), nil, 401, 3},
	}
	var placed Order
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := webtest.Do(t, "POST", f.orders+"/orders", tt.body, tt.header...)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if got := f.stock(t); got != tt.wantStock {
				t.Errorf("stock = %d, want %d", got, tt.wantStock)
			}
			if r.Status >= 400 {
				r.Problem(t)
				return
			}
			var o Order
			r.Decode(t, &o)
			if o.TotalCents != 2400 || o.Currency != "USD" || len(o.Items) != 1 || o.Items[0].UnitPriceCents != 1200 {
				t.Errorf("order = %+v", o)
			}
			if placed.ID == uuid.Nil {
				placed = o
			} else if o.ID != placed.ID || r.Header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("replay gave order %s (replayed header %q), want %s", o.ID, r.Header.Get("Idempotent-Replayed"), placed.ID)
			}
		})
	}
}

func TestPlaceOrderWithProductsDown(t *testing.T) {
	f := start(t)
	f.productsServer.Close()
	r := webtest.Do(t, "POST", f.orders+"/orders", orderBody(f.mug.ID, 1), webtest.Bearer(f.alice)...)
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503; body %s", r.Status, r.Body)
	}
	r.Problem(t)
	list := webtest.Do(t, "GET", f.orders+"/orders", nil, webtest.Bearer(f.alice)...)
	var page web.Page[Order]
	list.Decode(t, &page)
	if len(page.Items) != 0 {
		t.Errorf("%d orders stored after products failed", len(page.Items))
	}
	ready := webtest.Do(t, "GET", f.orders+"/readyz", nil)
	if ready.Status != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with products down, want 503", ready.Status)
	}
}

func TestGetAndListOrders(t *testing.T) {
	f := start(t)
	var mine []Order
	for i := 0; i < 3; i++ {
		r := webtest.Do(t, "POST", f.orders+"/orders", orderBody(f.mug.ID, 1), webtest.Bearer(f.alice)...)
		if r.Status != 201 {
			t.Fatalf("place: %d %s", r.Status, r.Body)
		}
		var o Order
		r.Decode(t, &o)
		mine = append(mine, o)
	}
	tests := []struct {
		name       string
		path       string
		token      string
		wantStatus int
	}{
		{"own order", "/orders/" + mine[0].ID.String(), f.alice, 200},
		{"another user's order", "/orders/" + mine[0].ID.String(), f.bob, 404},
		{"unknown order", "/orders/" + uuid.NewString(), f.alice, 404},
		{"not a uuid", "/orders/1", f.alice, 404},
		{"without token", "/orders/" + mine[0].ID.String(), "", 401},
		{"list", "/orders?limit=2", f.alice, 200},
		{"list bad limit", "/orders?limit=0", f.alice, 422},
		{"list bad cursor", "/orders?cursor=xyz", f.alice, 422},
		{"list without token", "/orders", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.token != "" {
				hdr = webtest.Bearer(tt.token)
			}
			r := webtest.Do(t, "GET", f.orders+tt.path, nil, hdr...)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if r.Status >= 400 {
				r.Problem(t)
			}
		})
	}

	// Walk alice's orders two at a time: newest first, each once; bob sees none.
	var walked []Order
	cursor := ""
	for {
		r := webtest.Do(t, "GET", f.orders+"/orders?limit=2&cursor="+cursor, nil, webtest.Bearer(f.alice)...)
		var page web.Page[Order]
		r.Decode(t, &page)
		walked = append(walked, page.Items...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(walked) != 3 || walked[0].ID != mine[2].ID || walked[2].ID != mine[0].ID {
		t.Errorf("walked %d orders, want alice's 3 newest first", len(walked))
	}
	var bobs web.Page[Order]
	webtest.Do(t, "GET", f.orders+"/orders", nil, webtest.Bearer(f.bob)...).Decode(t, &bobs)
	if len(bobs.Items) != 0 {
		t.Errorf("bob lists %d orders, want 0", len(bobs.Items))
	}
}
