package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/contract"
	"github.com/shopmesh/shopmesh/services/internal/jwtauth/jwtauthtest"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// TestPublicDocument: both engines serve the public API at /openapi.json, built from the
// built-in route table; every route of that table routes a documented operation, and every
// documented operation is routed.
func TestPublicDocument(t *testing.T) {
	iss := jwtauthtest.Start(t)
	env := map[string]string{"JWKS_URL": iss.JWKSURL}
	var docs [][]byte
	for _, engine := range []string{"nethttp", "loop"} {
		env["GATEWAY_ENGINE"] = engine
		var base string
		if engine == "loop" {
			base = startLoop(t, env)
		} else {
			base = startNetHTTP(t, env)
		}
		r := webtest.Do(t, http.MethodGet, base+"/openapi.json", nil)
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: GET /openapi.json = %d %s", engine, r.Status, r.Header.Get("Content-Type"))
		}
		docs = append(docs, r.Body)
	}
	if string(docs[0]) != string(docs[1]) {
		t.Error("the engines serve different documents")
	}
	c, err := contract.New(docs[0])
	if err != nil {
		t.Fatal(err)
	}
	table := DefaultTable("http://users", "http://products", "http://orders", DefaultLoginLimit, DefaultSignupLimit)
	routed := map[string]bool{}
	for _, op := range c.Operations() {
		method, path, _ := strings.Cut(string(op), " ")
		switch path {
		case "/healthz", "/readyz", "/metrics", "/openapi.json":
			continue // the gateway's own
		}
		r := table.Match(method, strings.NewReplacer("{id}", "x", "{order_id}", "x").Replace(path))
		if r == nil {
			t.Errorf("%s is documented but not routed", op)
			continue
		}
		routed[r.Name] = true
	}
	for _, r := range table.Routes {
		if !routed[r.Name] {
			t.Errorf("route %s (%s) routes no documented operation", r.Name, r.Prefix)
		}
	}
	for _, internal := range []string{"POST /reservations", "GET /reservations/{order_id}"} {
		for _, op := range c.Operations() {
			if string(op) == internal {
				t.Errorf("%s is internal but in the public document", op)
			}
		}
	}
}
