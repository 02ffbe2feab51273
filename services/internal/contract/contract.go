// Package contract checks the HTTP exchanges of tests against the services' OpenAPI
// documents (package api), with kin-openapi's validators: a handler that answers anything
// its document does not describe — an undocumented status, a field too many or missing, a
// wrong type, a missing required header — fails the test that made the request.
package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Checker validates exchanges against one OpenAPI document.
type Checker struct {
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]bool // "METHOD /path status" of the exchanges checked
}

// New loads and validates doc (OpenAPI 3.1 JSON, as api.Document gives it).
func New(doc []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if err := t.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is invalid: %w", err)
	}
	t.Servers = nil // match any host: tests serve on random loopback ports
	router, err := gorillamux.NewRouter(t)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	return &Checker{doc: t, router: router, seen: map[string]bool{}}, nil
}

// Exchange is one request a test sent and the answer it got, bodies read.
type Exchange struct {
	Method  string
	URL     *url.URL
	Header  http.Header
	Body    []byte
	Status  int
	RHeader http.Header
	RBody   []byte
}

// Check validates an exchange. A request the document describes must get one of its
// operation's documented answers; a request it refuses (a bad body or parameter) must get a
// documented 4xx; a request to no documented operation must get a problem+json 404 or 405.
func (c *Checker) Check(x Exchange) error {
	req, err := http.NewRequest(x.Method, x.URL.String(), bytes.NewReader(x.Body))
	if err != nil {
		return err
	}
	req.Header = x.Header.Clone()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		if x.Status != http.StatusNotFound && x.Status != http.StatusMethodNotAllowed {
			return fmt.Errorf("%s %s is in no operation of the document, yet answered %d (want 404 or 405)", x.Method, x.URL.Path, x.Status)
		}
		return c.problem(x)
	}
	c.mu.Lock()
	c.seen[fmt.Sprintf("%s %s %d", route.Method, route.Path, x.Status)] = true
	c.mu.Unlock()
	ctx := context.Background()
	opts := &openapi3filter.Options{
		MultiError:            true,
		IncludeResponseStatus: true,
		// Tokens are the services' to check; the document says which operations need one.
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if reqErr != nil && (x.Status < 400 || x.Status >= 500) {
		return fmt.Errorf("%s %s does not follow the document (%v), yet answered %d (want a 4xx)", x.Method, x.URL.Path, brief(reqErr), x.Status)
	}
	resp := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.Status, Header: x.RHeader,
		Body: io.NopCloser(bytes.NewReader(x.RBody)), Options: opts}
	if err := openapi3filter.ValidateResponse(ctx, resp); err != nil {
		return fmt.Errorf("the answer %d to %s %s does not follow the document: %v\nbody: %.400s", x.Status, x.Method, x.URL.Path, brief(err), x.RBody)
	}
	return nil
}

// problem checks an answer to an undocumented request: a problem+json body.
func (c *Checker) problem(x Exchange) error {
	if ct := x.RHeader.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		return fmt.Errorf("%s %s answered %d with Content-Type %q, want application/problem+json", x.Method, x.URL.Path, x.Status, ct)
	}
	schema := c.doc.Components.Schemas["Problem"]
	if schema == nil {
		return errors.New("the document defines no Problem schema")
	}
	var v any
	if err := json.Unmarshal(x.RBody, &v); err != nil {
		return fmt.Errorf("%s %s answered a body that is not JSON: %w", x.Method, x.URL.Path, err)
	}
	if err := schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("%s %s answered a body that is no Problem: %v", x.Method, x.URL.Path, brief(err))
	}
	return nil
}

// Seen lists the operations and statuses checked so far ("POST /users 201"), sorted.
func (c *Checker) Seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.seen))
	for k := range c.seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Operation is one method and path template: "GET /products/{id}".
type Operation string

// Operations lists the document's operations, sorted.
func (c *Checker) Operations() []Operation {
	var out []Operation
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, Operation(method+" "+path))
		}
	}
	slices.Sort(out)
	return out
}

// brief keeps the first lines of a validation error, which can quote whole schemas.
func brief(err error) string {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) > 12 {
		lines = append(lines[:12], "…")
	}
	return strings.Join(lines, "\n")
}

// SameRoutes compares the document's operations with a router's routes ("GET /products/:id",
// echo's notation): each must have the other.
func (c *Checker) SameRoutes(routes []string) error {
	doc := map[Operation]bool{}
	for _, op := range c.Operations() {
		doc[op] = true
	}
	served := map[Operation]bool{}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		parts := strings.Split(path, "/")
		for i, p := range parts {
			if strings.HasPrefix(p, ":") {
				parts[i] = "{" + p[1:] + "}"
			}
		}
		served[Operation(method+" "+strings.Join(parts, "/"))] = true
	}
	var problems []string
	for op := range served {
		if !doc[op] {
			problems = append(problems, fmt.Sprintf("%s is served but not in the document", op))
		}
	}
	for op := range doc {
		if !served[op] {
			problems = append(problems, fmt.Sprintf("%s is in the document but not served", op))
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Handler checks every exchange next serves, whoever the client: report gets each answer
// that breaks the document. Request bodies are read whole before next sees them.
func (c *Checker) Handler(next http.Handler, report func(error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		x := Exchange{Method: r.Method, URL: &u, Header: r.Header, Body: body,
			Status: rec.status, RHeader: w.Header().Clone(), RBody: rec.body.Bytes()}
		if err := c.Check(x); err != nil {
			report(err)
		}
	})
}

// recorder passes a response on and keeps a copy of it.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (deadlines, hijacking).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
