package contract_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/shopmesh/shopmesh/api"
	"github.com/shopmesh/shopmesh/services/internal/contract"
)

func checker(t *testing.T, service string) *contract.Checker {
	t.Helper()
	doc, err := api.Document(service)
	if err != nil {
		t.Fatal(err)
	}
	c, err := contract.New(doc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const user = `{"id":"0b6c3c1e-7d51-4f3b-9d5a-3f2a1c9e8b7a","email":"ada@example.com","name":"Ada","roles":[],"created_at":"2026-11-22T10:00:00Z"}`

// TestCheck is one table of exchanges with the users service's document: the answers it
// describes pass, and each kind of drift fails.
func TestCheck(t *testing.T) {
	c := checker(t, "users")
	json := http.Header{"Content-Type": {"application/json"}}
	problem := http.Header{"Content-Type": {"application/problem+json"}}
	register := `{"email":"ada@example.com","password":"correct horse","name":"Ada"}`
	tests := []struct {
		name, method, path, body string
		status                   int
		header                   http.Header
		answer                   string
		wantErr                  string // "" for a pass
	}{
		{"documented answer", "POST", "/users", register, 201, json, user, ""},
		{"undocumented status", "POST", "/users", register, 200, json, user, "status is not supported"},
		{"a field too many", "POST", "/users", register, 201, json, strings.Replace(user, `"roles"`, `"admin":true,"roles"`, 1), `"admin" is unsupported`},
		{"a field missing", "POST", "/users", register, 201, json, strings.Replace(user, `"name":"Ada",`, "", 1), `"name"`},
		{"a wrong type", "POST", "/users", register, 201, json, strings.Replace(user, `"roles":[]`, `"roles":"none"`, 1), "roles"},
		{"a refused request answered 4xx", "POST", "/users", `{"email":1}`, 400, problem, `{"type":"about:blank","title":"Bad Request","status":400}`, ""},
		{"a refused request answered 2xx", "POST", "/users", `{"email":"a@b.c","password":"12345678","name":"A","extra":1}`, 201, json, user, "want a 4xx"},
		{"an error that is no problem", "POST", "/users", register, 409, json, `{"error":"taken"}`, "the answer 409"},
		{"unknown path answered 404 problem", "GET", "/nowhere", "", 404, problem, `{"type":"about:blank","title":"Not Found","status":404}`, ""},
		{"unknown path answered 200", "GET", "/nowhere", "", 200, json, `{}`, "in no operation"},
		{"unknown path answered 404 text", "GET", "/nowhere", "", 404, http.Header{"Content-Type": {"text/plain"}}, "not found", "application/problem+json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, _ := url.Parse("http://127.0.0.1:1" + tt.path)
			err := c.Check(contract.Exchange{Method: tt.method, URL: u, Header: http.Header{"Content-Type": {"application/json"}},
				Body: []byte(tt.body), Status: tt.status, RHeader: tt.header, RBody: []byte(tt.answer)})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSameRoutes(t *testing.T) {
	c := checker(t, "users")
	routes := []string{"POST /users", "POST /users/login", "GET /users/me", "GET /.well-known/jwks.json",
		"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json"}
	if err := c.SameRoutes(routes); err != nil {
		t.Fatalf("the users service's routes: %v", err)
	}
	err := c.SameRoutes(append(routes[1:], "DELETE /users/:id"))
	if err == nil || !strings.Contains(err.Error(), "DELETE /users/{id} is served but not in the document") ||
		!strings.Contains(err.Error(), "POST /users is in the document but not served") {
		t.Fatalf("err = %v, want both directions reported", err)
	}
}

// TestHandlerChecksWhateverTheClient: the server-side check sees answers to any client.
func TestHandlerChecksWhateverTheClient(t *testing.T) {
	c := checker(t, "users")
	var reported []error
	h := c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK) // the document says 201
		_, _ = w.Write([]byte(user))
	}), func(err error) { reported = append(reported, err) })
	ts := httptest.NewServer(h)
	defer ts.Close()
	resp, err := http.Post(ts.URL+"/users", "application/json", strings.NewReader(`{"email":"ada@example.com","password":"correct horse","name":"Ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(reported) != 1 || !strings.Contains(reported[0].Error(), "answer 200 to POST /users") {
		t.Fatalf("reported = %v, want the undocumented 200", reported)
	}
	if got := c.Seen(); len(got) != 1 || got[0] != "POST /users 200" {
		t.Errorf("Seen = %v", got)
	}
}
