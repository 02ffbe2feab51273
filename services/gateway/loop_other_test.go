//go:build !linux

package gateway

import "testing"

// startLoop is startGateway's helper where the engine cannot run: the tests that use it (whose
// assertions are their own) skip there. No test is defined in this file.
func startLoop(t testing.TB, _ map[string]string) string {
	t.Skip("the event-loop engine needs Linux")
	return ""
}
