package products

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth/jwtauthtest"
	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

type fixture struct {
	base   string
	admin  string // token with the admin role
	user   string // token without it
	issuer *jwtauthtest.TokenIssuer
}

func start(t *testing.T, env map[string]string) fixture {
	t.Helper()
	iss := jwtauthtest.Start(t)
	all := map[string]string{"JWKS_URL": iss.JWKSURL, "SEED_DEMO_CATALOG": "false"}
	for k, v := range env {
		all[k] = v
	}
	ts := webtest.Start(t, all, LoadConfig, NewServer)
	webtest.CheckServer(t, ts)
	return fixture{base: ts.URL, admin: iss.Token(t, uuid.NewString(), "admin"), user: iss.Token(t, uuid.NewString()), issuer: iss}
}

func (f fixture) create(t *testing.T, name string, stock int) Product {
	t.Helper()
	r := webtest.Do(t, "POST", f.base+"/products",
		map[string]any{"name": name, "price_cents": 1250, "currency": "usd", "stock": stock}, webtest.Bearer(f.admin)...)
	if r.Status != http.StatusCreated {
		t.Fatalf("create product: %d %s", r.Status, r.Body)
	}
	var p Product
	r.Decode(t, &p)
	return p
}

func TestCreateAndUpdateProduct(t *testing.T) {
	f := start(t, nil)
	existing := f.create(t, "Mug", 4)
	valid := `{"name":"Cup","description":"small","price_cents":300,"currency":"EUR","stock":7}`

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		token      string
		wantStatus int
		wantField  string
	}{
		{"create", "POST", "/products", valid, f.admin, 201, ""},
		{"create without token", "POST", "/products", valid, "", 401, ""},
		{"create without admin role", "POST", "/products", valid, f.user, 403, ""},
		{"create missing price", "POST", "/products", `{"name":"Cup","currency":"EUR","stock":1}`, f.admin, 422, "price_cents"},
		{"create negative stock", "POST", "/products", `{"name":"Cup","price_cents":1,"currency":"EUR","stock":-1}`, f.admin, 422, "stock"},
		{"create bad currency", "POST", "/products", `{"name":"Cup","price_cents":1,"currency":"euro","stock":1}`, f.admin, 422, "currency"},
		{"create malformed", "POST", "/products", `{"name":`, f.admin, 400, ""},
		{"update", "PUT", "/products/" + existing.ID.String(), valid, f.admin, 200, ""},
		{"update unknown", "PUT", "/products/" + uuid.NewString(), valid, f.admin, 404, ""},
		{"update without admin role", "PUT", "/products/" + existing.ID.String(), valid, f.user, 403, ""},
		{"update invalid", "PUT", "/products/" + existing.ID.String(), `{"name":""}`, f.admin, 422, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.token != "" {
				hdr = webtest.Bearer(tt.token)
			}
			r := webtest.Do(t, tt.method, f.base+tt.path, tt.body, hdr...)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if r.Status >= 400 {
				p := r.Problem(t)
				if tt.wantField != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tt.wantField) {
					t.Errorf("problem does not name %q first: %s", tt.wantField, r.Body)
				}
				return
			}
			var p Product
			r.Decode(t, &p)
			if p.Name != "Cup" || p.PriceCents != 300 || p.Currency != "EUR" || p.Stock != 7 {
				t.Errorf("product = %+v", p)
			}
			if tt.method == "POST" && r.Header.Get("Location") != "/products/"+p.ID.String() {
				t.Errorf("Location = %q", r.Header.Get("Location"))
			}
		})
	}
}

func TestGetProduct(t *testing.T) {
	f := start(t, nil)
	p := f.create(t, "Mug", 4)
	tests := []struct {
		name       string
		path       string
		wantStatus int
	}{
		{"found", "/products/" + p.ID.String(), 200},
		{"unknown", "/products/" + uuid.NewString(), 404},
		{"not a uuid", "/products/42", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := webtest.Do(t, "GET", f.base+tt.path, nil)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if r.Status == 200 {
				var got Product
				r.Decode(t, &got)
				if got.ID != p.ID || got.Currency != "USD" {
					t.Errorf("got %+v", got)
				}
			} else {
				r.Problem(t)
			}
		})
	}
}

func TestListProducts(t *testing.T) {
	f := start(t, map[string]string{"SEED_DEMO_CATALOG": "true"})
	total := len(DemoCatalog())

	// Walk every page of 3 and expect each product once.
	seen := map[uuid.UUID]bool{}
	cursor := ""
	for {
		r := webtest.Do(t, "GET", f.base+"/products?limit=3&cursor="+cursor, nil)
		if r.Status != 200 {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		var page web.Page[Product]
		r.Decode(t, &page)
		if len(page.Items) > 3 {
			t.Fatalf("page of %d items, limit 3", len(page.Items))
		}
		for _, p := range page.Items {
			if seen[p.ID] {
				t.Fatalf("%s listed twice", p.Name)
			}
			seen[p.ID] = true
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(seen) != total {
		t.Errorf("listed %d products, want %d", len(seen), total)
	}

	r := webtest.Do(t, "GET", f.base+"/products", nil)
	var page web.Page[Product]
	r.Decode(t, &page)
	if len(page.Items) != total || page.NextCursor != "" {
		t.Errorf("default page: %d items, next %q; want %d, none", len(page.Items), page.NextCursor, total)
	}

	for _, bad := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=101", "limit"}, {"limit=ten", "limit"},
	} {
		r := webtest.Do(t, "GET", f.base+"/products?"+bad.query, nil)
		if r.Status != 422 || r.Problem(t).Errors[0].Field != bad.field {
			t.Errorf("%s: %d %s, want 422 naming %s", bad.query, r.Status, r.Body, bad.field)
		}
	}
	r = webtest.Do(t, "GET", f.base+"/products?cursor=not-a-cursor", nil)
	if r.Status != 422 || r.Problem(t).Errors[0].Field != "cursor" {
		t.Errorf("bad cursor: %d %s, want 422 about the cursor", r.Status, r.Body)
	}
}

func TestReservations(t *testing.T) {
	f := start(t, nil)
	p := f.create(t, "Mug", 4)
	order := uuid.NewString()
	body := func(order string, qty int) string {
		return `{"order_id":"` + order + `","items":[{"product_id":"` + p.ID.String() + `","quantity":` + itoa(qty) + `}]}`
	}
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		token      string
		wantStatus int
	}{
		{"reserve", "POST", "/reservations", body(order, 3), f.user, 201},
		{"same order again", "POST", "/reservations", body(order, 3), f.user, 200},
		{"same order other lines", "POST", "/reservations", body(order, 1), f.user, 409},
		{"beyond stock", "POST", "/reservations", body(uuid.NewString(), 2), f.user, 409},
		{"unknown product", "POST", "/reservations", `{"order_id":"` + uuid.NewString() + `","items":[{"product_id":"` + uuid.NewString() + `","quantity":1}]}`, f.user, 422},
		{"no items", "POST", "/reservations", `{"order_id":"` + uuid.NewString() + `","items":[]}`, f.user, 422},
		{"zero quantity", "POST", "/reservations", body(uuid.NewString(), 0), f.user, 422},
		{"without token", "POST", "/reservations", body(uuid.NewString(), 1), "", 401},
		{"get", "GET", "/reservations/" + order, "", f.user, 200},
		{"get unknown", "GET", "/reservations/" + uuid.NewString(), "", f.user, 404},
		{"release", "DELETE", "/reservations/" + order, "", f.user, 204},
		{"release again", "DELETE", "/reservations/" + order, "", f.user, 204},
		{"get released", "GET", "/reservations/" + order, "", f.user, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.token != "" {
				hdr = webtest.Bearer(tt.token)
			}
			var b any
			if tt.body != "" {
				b = tt.body
			}
			r := webtest.Do(t, tt.method, f.base+tt.path, b, hdr...)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if r.Status >= 400 {
				r.Problem(t)
			}
		})
	}
	r := webtest.Do(t, "GET", f.base+"/products/"+p.ID.String(), nil)
	var got Product
	r.Decode(t, &got)
	if got.Stock != 4 {
		t.Errorf("stock after reserve and release = %d, want 4", got.Stock)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
