package gateway

import (
	"testing"
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
