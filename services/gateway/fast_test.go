package gateway

import (
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// TestFastEngine runs the gateway's behaviour tests against the fasthttp engine. The ones not
// listed test what that engine does not do yet (see README, "The gateway's engines").
func TestFastEngine(t *testing.T) {
	for name, test := range map[string]func(*testing.T){
		"AuthenticationAndIdentityHeaders": TestAuthenticationAndIdentityHeaders,
		"RewriteHeadersAndTracing":         TestRewriteHeadersAndTracing,
		"RateLimitAnswers429WithHeaders":   TestRateLimitAnswers429WithHeaders,
		"UpstreamFailures":                 TestUpstreamFailures,
		"CanaryRoutesToBothUpstreams":      TestCanaryRoutesToBothUpstreams,
		"NoRetryOnceTheRequestReached":     TestNoRetryOnceTheRequestReachedTheUpstream,
		"NoRetryAfterATimeout":             TestNoRetryAfterATimeout,
		"EarlyAnswersReachTheClient":       TestEarlyAnswersReachTheClient,
		"GatewayMetrics":                   TestGatewayMetrics,
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(testEngineVar, "fasthttp")
			test(t)
		})
	}
}

// TestFastEngineTokenForms: the engine's cache lookup on the raw header must answer as the
// general parser does, whatever the header's form, before and after the token is cached.
func TestFastEngineTokenForms(t *testing.T) {
	up := echoUpstream(t, "api")
	f := startGateway(t, "routes:\n  - {name: api, prefix: /api, auth: required, upstreams: [{url: "+up.URL+"}]}\n",
		map[string]string{"GATEWAY_ENGINE": "fasthttp"})
	token := f.issuer.Token(t, "user-1")
	for _, tt := range []struct {
		header string
		want   int
	}{
		{"Bearer " + token, 200}, // caches the token
		{"Bearer " + token, 200},
		{"bearer " + token, 200},
		{"BEARER " + token, 200},
		{"Bearer  " + token, 200}, // the general parser trims
		{"Bearer " + token + " ", 200},
		{"Bearer " + token + "x", 401},
		{"Basic " + token, 401},
		{"Bearer", 401},
		{token, 401},
	} {
		r := webtest.Do(t, "GET", f.url+"/api/x", nil, "Authorization", tt.header)
		if r.Status != tt.want {
			t.Errorf("Authorization %.20q…: %d, want %d", tt.header, r.Status, tt.want)
		}
		if r.Status == 200 && decodeSeen(t, r).Header.Get(HeaderUserID) != "user-1" {
			t.Errorf("Authorization %.20q…: upstream saw no X-User-Id", tt.header)
		}
	}
}
