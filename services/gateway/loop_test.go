package gateway

import "testing"

// TestLoopEngine runs the gateway's behaviour tests against the event-loop engine, and the
// shared limits, which it decides off its loops. The assertions are those tests' own; the
// engine's own HTTP handling is asserted in loop_http_test.go and loop_linux_test.go.
func TestLoopEngine(t *testing.T) {
	runBehaviourTests(t, "loop", map[string]func(*testing.T){
		// They need REDIS_URL.
		"RedisLimitIsSharedAcrossGateways": TestRedisLimitIsSharedAcrossGateways,
		"RedisUnavailable":                 TestRedisUnavailable,
	})
}
