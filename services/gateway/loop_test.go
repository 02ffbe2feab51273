package gateway

import "testing"

// TestLoopEngine runs the gateway's behaviour tests against the event-loop engine.
func TestLoopEngine(t *testing.T) {
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
		// Limits decided in Redis, off the loop; they need REDIS_URL.
		"RedisLimitIsSharedAcrossGateways": TestRedisLimitIsSharedAcrossGateways,
		"RedisUnavailable":                 TestRedisUnavailable,
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(testEngineVar, "loop")
			test(t)
		})
	}
}
