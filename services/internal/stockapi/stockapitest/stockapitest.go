// Package stockapitest holds the checks both sides of the reservation contract run on their
// own configuration.
package stockapitest

import (
	"strings"
	"testing"
)

// TimingIsChecked runs load, a service's LoadConfig, on RESERVATION_TTL and CONFIRM_MARGIN
// pairs: each service reads both keys and refuses, naming both, a pair with which no order
// could be taken (stockapi.CheckTiming).
func TimingIsChecked(t *testing.T, load func(getenv func(string) string) error) {
	t.Helper()
	for _, tt := range []struct {
		env map[string]string
		ok  bool
	}{
		{map[string]string{}, true},
		{map[string]string{"RESERVATION_TTL": "20s"}, false},
		{map[string]string{"CONFIRM_MARGIN": "20m"}, false},
		{map[string]string{"RESERVATION_TTL": "6s", "CONFIRM_MARGIN": "2s"}, true},
	} {
		err := load(func(k string) string { return tt.env[k] })
		if (err == nil) != tt.ok {
			t.Errorf("%v: %v, want ok %v", tt.env, err, tt.ok)
		}
		if err != nil && !(strings.Contains(err.Error(), "CONFIRM_MARGIN") && strings.Contains(err.Error(), "RESERVATION_TTL")) {
			t.Errorf("%v: %v does not name both keys", tt.env, err)
		}
	}
}
