package localshop

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// TestRunRefusesAReservationTimingThatTakesNoOrder: each service checks the pair with the
// other's default; `shopmesh run` knows both values and refuses a pair that passes each
// service's own check yet would answer every order 503, before starting anything.
func TestRunRefusesAReservationTimingThatTakesNoOrder(t *testing.T) {
	for _, tt := range []struct {
		env     map[string]string
		refused bool
	}{
		{map[string]string{"PRODUCTS_RESERVATION_TTL": "2m", "ORDERS_CONFIRM_MARGIN": "5m"}, true},
		{map[string]string{"RESERVATION_TTL": "2m", "CONFIRM_MARGIN": "5m"}, true},
		{map[string]string{"PRODUCTS_RESERVATION_TTL": "10m", "ORDERS_CONFIRM_MARGIN": "5m"}, false},
	} {
		env := tt.env
		env["SHOPMESH_PKI_DIR"] = filepath.Join(t.TempDir(), "pki")
		for _, p := range []string{"USERS_", "PRODUCTS_", "ORDERS_", "GATEWAY_"} { // a pair that passes starts the shop
			env[p+"HTTP_ADDR"] = webtest.FreeAddr(t)
			if p != "GATEWAY_" {
				env[p+"HEALTH_ADDR"] = webtest.FreeAddr(t)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := Run(ctx, nil, func(k string) string { return env[k] }, io.Discard)
		cancel()
		named := err != nil && strings.Contains(err.Error(), "RESERVATION_TTL") && strings.Contains(err.Error(), "CONFIRM_MARGIN")
		if named != tt.refused {
			t.Errorf("%v: %v, want refused %v", tt.env, err, tt.refused)
		}
	}
}
