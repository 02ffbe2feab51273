package rehearsal

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// client is an HTTP client whose connections come from addr.
func client(addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func TestAPIGatewayStandIn(t *testing.T) {
	type seen struct {
		path, host, xff, remote string
	}
	got := make(chan seen, 10)
	nlb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.URL.RequestURI(), r.Host, strings.Join(r.Header.Values("X-Forwarded-For"), "|"), r.RemoteAddr}
	}))
	defer nlb.Close()
	nlbHost := strings.TrimPrefix(nlb.URL, "http://")
	mapped := map[string]string{"X-Forwarded-For": "context.identity.sourceIp"}
	edge := Edge{Stage: "v1", Methods: []Method{
		{Resource: "/users", Verb: "ANY", HeaderMappings: mapped},
		{Resource: "/users/{proxy+}", Verb: "ANY", HeaderMappings: mapped},
		{Resource: "/orders", Verb: "POST", HeaderMappings: map[string]string{}},
	}, Throttles: map[string]Throttle{"*/*": {Rate: 1000, Burst: 1000}, "orders/POST": {Rate: 0.001, Burst: 2}}, IntegrationWait: 5 * time.Second}
	g, err := newAPIGateway("127.0.0.2:0", edge, nlbHost, net.IPv4(127, 0, 0, 4))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c := client("127.0.0.9")
	send := func(method, path, xff string) int {
		req, _ := http.NewRequest(method, strings.TrimSuffix(g.URL(), "/v1")+path, nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 400 && !strings.Contains(string(body), `"message"`) {
			t.Errorf("%s %s: %d %s, want API Gateway's {\"message\": …}", method, path, resp.StatusCode, body)
		}
		return resp.StatusCode
	}
	if s := send("GET", "/v1/users/me?x=1", "6.6.6.6"); s != 200 {
		t.Fatalf("GET /v1/users/me = %d", s)
	}
	s := <-got
	if s.path != "/users/me?x=1" || s.host != nlbHost || s.xff != "127.0.0.9" || !strings.HasPrefix(s.remote, "127.0.0.4:") {
		t.Errorf("the integration request = %+v, want the stage stripped, Host the NLB's, X-Forwarded-For set from the caller's address, from the VPC link's address", s)
	}
	if send("POST", "/v1/orders", "6.6.6.6") != 200 {
		t.Fatal("POST /v1/orders refused")
	}
	if s := <-got; s.xff != "6.6.6.6" {
		t.Errorf("without a mapping X-Forwarded-For = %q, want the client's own, passed on", s.xff)
	}
	for _, tt := range []struct{ method, path string }{{"GET", "/users"}, {"GET", "/v1/nothing"}, {"GET", "/v1/orders"}, {"GET", "/v1/users/"}} {
		if s := send(tt.method, tt.path, ""); s != http.StatusForbidden {
			t.Errorf("%s %s = %d, want 403 Missing Authentication Token", tt.method, tt.path, s)
		}
	}
	if send("POST", "/v1/orders", "") != 200 || send("POST", "/v1/orders", "") != http.StatusTooManyRequests {
		t.Error("POST /orders with burst 2: the third request was not throttled")
	}
	if send("GET", "/v1/users", "") != 200 {
		t.Error("GET /users throttled by POST /orders's own setting")
	}
}

func TestElastiCacheToken(t *testing.T) {
	ec := &elastiCache{user: "shopmesh-dev-gateway", cache: "shopmesh-dev-ratelimit", region: "eu-west-1"}
	token := func(user, cache, secret string, at time.Time) string {
		q := url.Values{"Action": {"connect"}, "User": {user}, "X-Amz-Expires": {"900"}}
		req, _ := http.NewRequest("GET", "http://"+cache+"/?"+q.Encode(), nil)
		signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: podAccessKey, SecretAccessKey: secret},
			req, emptySHA256, "elasticache", "eu-west-1", at)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimPrefix(signed, "http://")
	}
	now := time.Now().UTC()
	if err := ec.verify(ec.user, token(ec.user, ec.cache, podSecretKey, now)); err != nil {
		t.Fatalf("a valid token: %v", err)
	}
	for name, tt := range map[string]struct{ user, tok string }{
		"another user":      {"default", token("default", ec.cache, podSecretKey, now)},
		"another cache":     {ec.user, token(ec.user, "other-cache", podSecretKey, now)},
		"another identity":  {ec.user, token(ec.user, ec.cache, "not-the-pod-secret", now)},
		"an expired token":  {ec.user, token(ec.user, ec.cache, podSecretKey, now.Add(-16*time.Minute))},
		"a password":        {ec.user, "hunter2"},
		"a token of a user": {ec.user, token("default", ec.cache, podSecretKey, now)},
	} {
		if err := ec.verify(tt.user, tt.tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestForwarderConnectsFromItsOwnAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	remote := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			remote <- c.RemoteAddr().String()
			c.Close()
		}
	}()
	f, err := newForwarder("sidecar", "127.0.0.1:0", net.IPv4(127, 0, 0, 6))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Register(ln.Addr().String())
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-remote; !strings.HasPrefix(got, "127.0.0.6:") {
		t.Errorf("the target saw %s, want 127.0.0.6 (Istio's inbound source)", got)
	}
}
