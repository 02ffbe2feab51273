// Package webtest is a small JSON client for tests that talk to real servers.
package webtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/contract"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// Response is a finished response with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Decode unmarshals the body into v, failing the test if it cannot.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Problem decodes a problem+json body, failing the test if the response is not one.
func (r Response) Problem(t testing.TB) web.Problem {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != web.MIMEProblemJSON {
		t.Fatalf("Content-Type = %q, want %q (body %s)", ct, web.MIMEProblemJSON, r.Body)
	}
	var p web.Problem
	r.Decode(t, &p)
	if p.Status != r.Status {
		t.Errorf("problem status %d differs from response status %d", p.Status, r.Status)
	}
	return p
}

// Do sends a request. body is sent as is when it is a string or []byte, else as JSON. headers
// are name, value pairs; "Authorization" with a bare token gets the Bearer scheme.
func Do(t testing.TB, method, url string, body any, headers ...string) Response {
	t.Helper()
	var rd io.Reader
	var sent []byte
	switch b := body.(type) {
	case nil:
	case string:
		sent = []byte(b)
	case []byte:
		sent = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		sent = data
	}
	if body != nil {
		rd = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := contracts.Load(req.URL.Host); ok {
		x := contract.Exchange{Method: method, URL: req.URL, Header: req.Header, Body: sent,
			Status: resp.StatusCode, RHeader: resp.Header, RBody: data}
		if err := c.(*contract.Checker).Check(x); err != nil {
			t.Errorf("contract: %v", err)
		}
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// CheckServer checks every exchange of the test server ts, from any client, against the
// document it serves at /openapi.json, until the test ends: an answer the document does not
// describe fails the test.
func CheckServer(t testing.TB, ts *httptest.Server) *contract.Checker {
	t.Helper()
	c, err := contract.New(servedDocument(t, ts.URL))
	if err != nil {
		t.Fatal(err)
	}
	// The document and the router list the same operations.
	if e, ok := ts.Config.Handler.(*echo.Echo); ok {
		var routes []string
		for _, rt := range e.Routes() {
			routes = append(routes, rt.Method+" "+rt.Path)
		}
		if err := c.SameRoutes(routes); err != nil {
			t.Errorf("contract: %v", err)
		}
	}
	var mu sync.Mutex
	done := false
	ts.Config.Handler = c.Handler(ts.Config.Handler, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if !done { // a request the server finishes after the test is no longer the test's
			t.Errorf("contract: %v", err)
		}
	})
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return c
}

// CheckServed is CheckContract with the document the server at baseURL serves at
// /openapi.json: for servers the test does not build itself, such as a whole shop's gateway.
func CheckServed(t testing.TB, baseURL string) *contract.Checker {
	t.Helper()
	return CheckContract(t, baseURL, servedDocument(t, baseURL))
}

// servedDocument is the OpenAPI document the server at baseURL serves.
func servedDocument(t testing.TB, baseURL string) []byte {
	t.Helper()
	r := Do(t, http.MethodGet, baseURL+"/openapi.json", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s/openapi.json: %d %s", baseURL, r.Status, r.Body)
	}
	return r.Body
}

// contracts holds, by host:port, the checker of each test server under CheckContract.
var contracts sync.Map

// CheckContract makes Do check every exchange with the server at baseURL against its OpenAPI
// document (package api) until the test ends: an answer the document does not describe fails
// the test.
func CheckContract(t testing.TB, baseURL string, doc []byte) *contract.Checker {
	t.Helper()
	c, err := contract.New(doc)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	contracts.Store(u.Host, c)
	t.Cleanup(func() { contracts.Delete(u.Host) })
	return c
}

// Bearer returns an Authorization header pair for token.
func Bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Start builds a service's real server from an environment map (load reads it, build makes the
// server, as the service's Run does) and serves it on loopback until the test ends.
func Start[C any](t testing.TB, env map[string]string, load func(func(string) string) (C, error),
	build func(context.Context, C, *slog.Logger) (*web.Server, func(), error)) *httptest.Server {
	t.Helper()
	cfg, err := load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	srv, closeFn, err := build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Echo)
	t.Cleanup(func() { ts.Close(); closeFn() })
	return ts
}
