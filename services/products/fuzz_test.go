package products

import (
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/stockapi"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// The assertions are webtest.FuzzBind's: whatever the body, binding must end in a 400, 413 or
// 422, never a 5xx or a panic; a failing input is kept under testdata/fuzz.
func FuzzBindProductInput(f *testing.F) {
	webtest.FuzzBind[ProductInput](f, `{"name":"Mug","description":"","price_cents":1200,"currency":"EUR","stock":5}`,
		`{"price_cents":-1}`, `{"currency":"euro"}`, `{"stock":9223372036854775808}`)
}

func FuzzBindReservationRequest(f *testing.F) {
	webtest.FuzzBind[stockapi.ReservationRequest](f,
		`{"order_id":"6f1b2c1e-3b4a-4c8e-9a57-0d2b1f3e4a5b","items":[{"product_id":"6f1b2c1e-3b4a-4c8e-9a57-0d2b1f3e4a5c","quantity":2}]}`,
		`{"order_id":"","items":[]}`)
}
