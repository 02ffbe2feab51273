package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/shopmesh/shopmesh/api"
)

// load parses and validates a document with kin-openapi, as the contract tests do.
func load(t *testing.T, doc []byte) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	d, err := loader.LoadFromData(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(loader.Context); err != nil {
		t.Fatal(err)
	}
	if d.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", d.OpenAPI)
	}
	return d
}

func TestServiceDocumentsAreValid(t *testing.T) {
	for _, s := range api.Services {
		t.Run(s, func(t *testing.T) {
			doc, err := api.Document(s)
			if err != nil {
				t.Fatal(err)
			}
			d := load(t, doc)
			for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
				if d.Paths.Find(p) == nil {
					t.Errorf("%s: no %s (common.yaml is merged into every document)", s, p)
				}
			}
			// Every error answer is a problem+json body.
			for path, item := range d.Paths.Map() {
				for method, op := range item.Operations() {
					for status, r := range op.Responses.Map() {
						if status[0] >= '4' && r.Value.Content.Get("application/problem+json") == nil {
							t.Errorf("%s %s %s: an error answer without application/problem+json", method, path, status)
						}
					}
				}
			}
		})
	}
	if _, err := api.Document("payments"); err == nil || !strings.Contains(err.Error(), "users, products, orders") {
		t.Errorf("unknown service: err = %v, want one naming the services", err)
	}
}

func TestPublicDocumentFollowsTheRouteTable(t *testing.T) {
	// A table that routes the catalog (auth optional, rate-limited) and orders' reads (auth
	// required, no limit), nothing else.
	doc, err := api.Public(func(method, path string) api.Route {
		switch {
		case strings.HasPrefix(path, "/products"):
			return api.Route{Routed: true, Auth: true, Limited: true}
		case strings.HasPrefix(path, "/orders") && method == "GET":
			return api.Route{Routed: true, Auth: true}
		case strings.HasPrefix(path, "/reservations"):
			return api.Route{Routed: true} // internal operations stay out even when routed
		}
		return api.Route{}
	})
	if err != nil {
		t.Fatal(err)
	}
	d := load(t, doc)
	var ops []string
	for path, item := range d.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	want := map[string]bool{"GET /products": true, "POST /products": true, "GET /products/{id}": true, "PUT /products/{id}": true,
		"GET /orders": true, "GET /orders/{id}": true, "GET /healthz": true, "GET /readyz": true, "GET /metrics": true, "GET /openapi.json": true}
	if len(ops) != len(want) {
		t.Errorf("operations = %v, want %d of them", ops, len(want))
	}
	for _, op := range ops {
		if !want[op] {
			t.Errorf("unexpected operation %s", op)
		}
	}
	list := d.Paths.Find("/products").Get.Responses
	for _, status := range []string{"200", "401", "429", "502", "503", "504"} {
		if list.Value(status) == nil {
			t.Errorf("GET /products: no %s", status)
		}
	}
	orders := d.Paths.Find("/orders").Get
	if orders.Responses.Value("429") != nil {
		t.Error("GET /orders: 429 on a route without a rate limit")
	}
	if orders.Security == nil || len(*orders.Security) == 0 {
		t.Error("GET /orders: the orders document's bearer requirement was lost")
	}
	var raw map[string]any
	if err := json.Unmarshal(doc, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["info"].(map[string]any)["title"] != "shopmesh public API" {
		t.Errorf("info = %v", raw["info"])
	}
}
