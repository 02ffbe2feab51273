package products

import (
	"strings"
	"testing"
)

// TestConfigRefusesATimingThatTakesNoOrder: products checks its RESERVATION_TTL against orders'
// CONFIRM_MARGIN (the default, or the value it is given too) at start, naming both keys.
func TestConfigRefusesATimingThatTakesNoOrder(t *testing.T) {
	for _, tt := range []struct {
		env map[string]string
		ok  bool
	}{
		{map[string]string{}, true},
		{map[string]string{"RESERVATION_TTL": "20s"}, false},
		{map[string]string{"CONFIRM_MARGIN": "20m"}, false},
		{map[string]string{"RESERVATION_TTL": "6s", "CONFIRM_MARGIN": "2s"}, true},
	} {
		_, err := LoadConfig(func(k string) string { return tt.env[k] })
		if (err == nil) != tt.ok {
			t.Errorf("%v: %v, want ok %v", tt.env, err, tt.ok)
		}
		if err != nil && !(strings.Contains(err.Error(), "CONFIRM_MARGIN") && strings.Contains(err.Error(), "RESERVATION_TTL")) {
			t.Errorf("%v: %v does not name both keys", tt.env, err)
		}
	}
}
