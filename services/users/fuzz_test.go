package users

import (
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// The assertions are webtest.FuzzBind's: whatever the body, binding must end in a 400, 413 or
// 422, never a 5xx or a panic; a failing input is kept under testdata/fuzz.
func FuzzBindRegistration(f *testing.F) {
	webtest.FuzzBind[Registration](f, `{"email":"ada@example.com","password":"password1","name":"Ada"}`, `{"email":"x"}`, `{"password":1}`)
}

func FuzzBindLogin(f *testing.F) {
	webtest.FuzzBind[loginRequest](f, `{"email":"ada@example.com","password":"password1"}`, `{"email":""}`)
}
