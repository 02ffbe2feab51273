package users

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/jwtauth"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// startServer runs the real users server on loopback.
func startServer(t *testing.T, env map[string]string) string {
	t.Helper()
	ts := webtest.Start(t, env, LoadConfig, NewServer)
	webtest.CheckServer(t, ts)
	return ts.URL
}

func register(t *testing.T, base, email, password string) {
	t.Helper()
	r := webtest.Do(t, "POST", base+"/users", map[string]string{"email": email, "password": password, "name": "Test"})
	if r.Status != http.StatusCreated {
		t.Fatalf("register %s: %d %s", email, r.Status, r.Body)
	}
}

func login(t *testing.T, base, email, password string) string {
	t.Helper()
	r := webtest.Do(t, "POST", base+"/users/login", map[string]string{"email": email, "password": password})
	if r.Status != http.StatusOK {
		t.Fatalf("login %s: %d %s", email, r.Status, r.Body)
	}
	var tok Token
	r.Decode(t, &tok)
	return tok.AccessToken
}

func TestRegister(t *testing.T) {
	base := startServer(t, nil)
	register(t, base, "taken@example.com", "password1")

	tests := []struct {
		name       string
		body       any
		header     []string
		wantStatus int
		wantField  string // for 422: a field the problem must name
	}{
		{"created", `{"email":"Ada@Example.com","password":"password1","name":"Ada"}`, nil, 201, ""},
		{"duplicate email in other case", `{"email":"TAKEN@example.com","password":"password1","name":"X"}`, nil, 409, ""},
		{"invalid email", `{"email":"not-an-email","password":"password1","name":"X"}`, nil, 422, "email"},
		{"short password", `{"email":"b@example.com","password":"short","name":"X"}`, nil, 422, "password"},
		{"missing name", `{"email":"c@example.com","password":"password1"}`, nil, 422, "name"},
		{"empty body", nil, []string{"Content-Type", "application/json"}, 422, "email"},
		{"malformed JSON", `{"email":`, nil, 400, ""},
		{"wrong type", `{"email":1,"password":"password1","name":"X"}`, nil, 400, ""},
		{"unknown field", `{"email":"d@example.com","password":"password1","name":"X","admin":true}`, nil, 400, ""},
		{"not JSON", "email=a", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, ""},
		{"too large", `{"email":"e@example.com","password":"password1","name":"` + strings.Repeat("x", 2<<20) + `"}`, nil, 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := webtest.Do(t, "POST", base+"/users", tt.body, tt.header...)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if tt.wantStatus == 201 {
				var u userResponse
				r.Decode(t, &u)
				if u.Email != "ada@example.com" || u.Name != "Ada" || u.ID.String() == "" {
					t.Errorf("created user = %+v", u)
				}
				if strings.Contains(string(r.Body), "password") {
					t.Errorf("response mentions the password: %s", r.Body)
				}
				return
			}
			p := r.Problem(t)
			if p.Detail == "" {
				t.Errorf("problem has no detail: %s", r.Body)
			}
			if tt.wantField != "" {
				found := false
				for _, f := range p.Errors {
					found = found || f.Field == tt.wantField
				}
				if !found {
					t.Errorf("problem does not name field %q: %s", tt.wantField, r.Body)
				}
			}
		})
	}
}

func TestLogin(t *testing.T) {
	base := startServer(t, nil)
	register(t, base, "ada@example.com", "password1")

	tests := []struct {
		name       string
		body       string
		wantStatus int
	}{
		{"ok", `{"email":"ada@example.com","password":"password1"}`, 200},
		{"ok with other case", `{"email":"ADA@example.com","password":"password1"}`, 200},
		{"wrong password", `{"email":"ada@example.com","password":"password2"}`, 401},
		{"unknown email", `{"email":"bob@example.com","password":"password1"}`, 401},
		{"missing password", `{"email":"ada@example.com"}`, 422},
		{"malformed", `{`, 400},
	}
	var unauthorized []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := webtest.Do(t, "POST", base+"/users/login", tt.body)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			switch tt.wantStatus {
			case 200:
				var tok Token
				r.Decode(t, &tok)
				if tok.TokenType != "Bearer" || tok.ExpiresIn != 900 || strings.Count(tok.AccessToken, ".") != 2 {
					t.Errorf("token = %+v", tok)
				}
			case 401:
				p := r.Problem(t)
				unauthorized = append(unauthorized, p.Detail)
				if r.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			default:
				r.Problem(t)
			}
		})
	}
	// Whether the email exists must not show in the answer.
	if len(unauthorized) != 2 || unauthorized[0] != unauthorized[1] {
		t.Errorf("401 details differ between wrong password and unknown email: %q", unauthorized)
	}
}

func TestMe(t *testing.T) {
	base := startServer(t, nil)
	register(t, base, "ada@example.com", "password1")
	tok := login(t, base, "ada@example.com", "password1")

	// A token from another key, and one that expired, both signed like ours otherwise.
	otherKey, _ := jwtauth.GenerateKey()
	foreign, _ := jwtauth.NewSigner(otherKey, "shopmesh-users", "shopmesh", time.Minute).Sign("x", nil)
	key, _ := jwtauth.GenerateKey()
	expired, _ := jwtauth.NewSigner(key, "shopmesh-users", "shopmesh", -time.Hour).Sign("x", nil)

	tests := []struct {
		name       string
		header     []string
		wantStatus int
	}{
		{"ok", webtest.Bearer(tok), 200},
		{"no token", nil, 401},
		{"not bearer", []string{"Authorization", "Basic YTpi"}, 401},
		{"garbage", webtest.Bearer("abc"), 401},
		{"unknown key", webtest.Bearer(foreign), 401},
		{"expired other key", webtest.Bearer(expired), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := webtest.Do(t, "GET", base+"/users/me", nil, tt.header...)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if tt.wantStatus != 200 {
				r.Problem(t)
				return
			}
			var u userResponse
			r.Decode(t, &u)
			if u.Email != "ada@example.com" {
				t.Errorf("me = %+v", u)
			}
		})
	}
}

func TestJWKSPublishesSigningAndExtraKeys(t *testing.T) {
	dir := t.TempDir()
	signing, _ := jwtauth.GenerateKey()
	next, _ := jwtauth.GenerateKey()
	writeKeys(t, dir+"/signing.pem", signing, dir+"/next.pub.pem", next)
	base := startServer(t, map[string]string{
		"JWT_SIGNING_KEY_FILE":       dir + "/signing.pem",
		"JWT_EXTRA_PUBLIC_KEY_FILES": dir + "/next.pub.pem",
	})
	r := webtest.Do(t, "GET", base+"/.well-known/jwks.json", nil)
	if r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	keys, err := jwtauth.ParseJWKS(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name string
		kid  string
	}{{"signing", jwtauth.KeyID(signing.Public().(ed25519PublicKey))}, {"next", jwtauth.KeyID(next.Public().(ed25519PublicKey))}} {
		if _, ok := keys[k.kid]; !ok {
			t.Errorf("JWKS lacks the %s key %s: %s", k.name, k.kid, r.Body)
		}
	}
	if len(keys) != 2 {
		t.Errorf("JWKS has %d keys, want 2", len(keys))
	}
	// A token signed with the configured key verifies against the published set.
	tok := func() string {
		register(t, base, "k@example.com", "password1")
		return login(t, base, "k@example.com", "password1")
	}()
	v := jwtauth.NewVerifier(jwtauth.StaticKeys(keys), "shopmesh-users", "shopmesh", 0)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("token does not verify against the JWKS: %v", err)
	}
}

func TestAdminAccountIsCreatedOnce(t *testing.T) {
	env := map[string]string{"ADMIN_EMAIL": "admin@example.com", "ADMIN_PASSWORD": "admin-password"}
	base := startServer(t, env)
	tok := login(t, base, "admin@example.com", "admin-password")
	r := webtest.Do(t, "GET", base+"/users/me", nil, webtest.Bearer(tok)...)
	var u userResponse
	r.Decode(t, &u)
	if len(u.Roles) != 1 || u.Roles[0] != "admin" {
		t.Errorf("admin roles = %v, want [admin]", u.Roles)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	_, err := LoadConfig(func(k string) string {
		return map[string]string{"JWT_TTL": "soon", "ADMIN_EMAIL": "admin@example.com", "LOG_LEVEL": "loud"}[k]
	})
	if err == nil {
		t.Fatal("LoadConfig accepted bad values")
	}
	for _, name := range []string{"JWT_TTL", "ADMIN_PASSWORD", "LOG_LEVEL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}
