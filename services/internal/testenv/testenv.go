// Package testenv gives tests the address of a server they need from the environment, with one
// rule: without it the test is skipped, except under CI (CI is set), where a test that needs a
// server and does not run is a failure.
package testenv

import (
	"os"
	"testing"
)

// Require returns the variable name, which points at the server what (for messages).
func Require(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set under CI: %s tests must run (see .ci/run)", name, what)
		}
		t.Skipf("%s is not set; skipping %s tests (see README: Quick start)", name, what)
	}
	return v
}
