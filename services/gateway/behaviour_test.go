package gateway

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/web"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// behaviourTests are the gateway's behaviour tests every engine must pass.
var behaviourTests = map[string]func(*testing.T){
	"AuthenticationAndIdentityHeaders": TestAuthenticationAndIdentityHeaders,
	"RewriteHeadersAndTracing":         TestRewriteHeadersAndTracing,
	"RateLimitAnswers429WithHeaders":   TestRateLimitAnswers429WithHeaders,
	"UpstreamFailures":                 TestUpstreamFailures,
	"CanaryRoutesToBothUpstreams":      TestCanaryRoutesToBothUpstreams,
	"NoRetryOnceTheRequestReached":     TestNoRetryOnceTheRequestReachedTheUpstream,
	"NoRetryAfterATimeout":             TestNoRetryAfterATimeout,
	"EarlyAnswersReachTheClient":       TestEarlyAnswersReachTheClient,
	"GatewayMetrics":                   TestGatewayMetrics,
}

// runBehaviourTests runs behaviourTests, and more, against engine.
func runBehaviourTests(t *testing.T, engine string, more map[string]func(*testing.T)) {
	run := func(name string, test func(*testing.T)) {
		t.Run(name, func(t *testing.T) {
			t.Setenv(testEngineVar, engine)
			test(t)
		})
	}
	for name, test := range behaviourTests {
		run(name, test)
	}
	for name, test := range more {
		run(name, test)
	}
}

// TestLoopEngineTokenForms: the event loops' cache lookup on the raw header must answer as
// the general parser does, whatever the header's form, before and after the token is cached.
func TestLoopEngineTokenForms(t *testing.T) {
	up := echoUpstream(t, "api")
	f := startGateway(t, "routes:\n  - {name: api, prefix: /api, auth: required, upstreams: [{url: "+up.URL+"}]}\n",
		map[string]string{"GATEWAY_ENGINE": "loop"})
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

// TestAppendProblem: the hand-written problem body is the JSON encoding/json makes of the same
// web.Problem, whatever the strings hold.
func TestAppendProblem(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and backslash \`, "tab\tnewline\n\x00\x1f", "<html> & co", "é ✓ 🛒", "bad \xff utf-8 \xc3", "\u2028\u2029"} {
		got := appendProblem(nil, 429, s, "/orders"+s, s)
		want := web.Problem{Type: "about:blank", Title: "Too Many Requests", Status: 429, Detail: s, Instance: "/orders" + s, RequestID: s}
		var back web.Problem
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, got, err)
		}
		// encoding/json turns invalid UTF-8 into U+FFFD; so must the hand-written body.
		wantJSON, _ := json.Marshal(want)
		var wantBack web.Problem
		_ = json.Unmarshal(wantJSON, &wantBack)
		if !reflect.DeepEqual(back, wantBack) {
			t.Errorf("%q:\n got %+v\nwant %+v", s, back, wantBack)
		}
	}
}
