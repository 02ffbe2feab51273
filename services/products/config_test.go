package products

import (
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/stockapi/stockapitest"
)

// TestConfigRefusesATimingThatTakesNoOrder: products checks RESERVATION_TTL against CONFIRM_MARGIN
// at start, reading the other service's key too, and names both.
func TestConfigRefusesATimingThatTakesNoOrder(t *testing.T) {
	stockapitest.TimingIsChecked(t, func(getenv func(string) string) error {
		_, err := LoadConfig(getenv)
		return err
	})
}
