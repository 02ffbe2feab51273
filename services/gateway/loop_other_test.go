//go:build !linux

package gateway

import "testing"

func startLoop(t *testing.T, _ map[string]string) string {
	t.Skip("the event-loop engine needs Linux")
	return ""
}
