package users

import (
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

func FuzzBindRegistration(f *testing.F) {
	webtest.FuzzBind[Registration](f, `{"email":"ada@example.com","password":"password1","name":"Ada"}`, `{"email":"x"}`, `{"password":1}`)
}

func FuzzBindLogin(f *testing.F) {
	webtest.FuzzBind[loginRequest](f, `{"email":"ada@example.com","password":"password1"}`, `{"email":""}`)
}
