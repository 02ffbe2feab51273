package gateway

import "testing"

// TestLoopEngine runs the gateway's behaviour tests against the event-loop engine, and the
// shared limits, which it decides off its loops.
func TestLoopEngine(t *testing.T) {
	runBehaviourTests(t, "loop", map[string]func(*testing.T){
		// They need REDIS_URL.
		"RedisLimitIsSharedAcrossGateways": TestRedisLimitIsSharedAcrossGateways,
		"RedisUnavailable":                 TestRedisUnavailable,
	})
}
