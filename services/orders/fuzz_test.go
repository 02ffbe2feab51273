package orders

import (
	"strings"
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// FuzzParseIdempotencyKey: a key is accepted only as 1 to MaxKeyLen visible ASCII characters
// (quotes around it dropped), and an accepted key parses to itself.
func FuzzParseIdempotencyKey(f *testing.F) {
	for _, s := range []string{"", "abc", `"abc"`, `""`, " key ", "k\x00", "ключ", strings.Repeat("k", MaxKeyLen+1), `"a"b"`, "\"\"\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		key, err := ParseIdempotencyKey(raw)
		if err != nil || raw == "" {
			if raw == "" && (err != nil || key != "") {
				t.Fatalf("empty header: %q, %v", key, err)
			}
			return
		}
		if key == "" || len(key) > MaxKeyLen {
			t.Fatalf("%q accepted as %q", raw, key)
		}
		for _, r := range key {
			if r <= ' ' || r >= 0x7f {
				t.Fatalf("%q accepted as %q, with %q in it", raw, key, r)
			}
		}
		if again, err := ParseIdempotencyKey(key); err != nil || again != key {
			t.Fatalf("the accepted key %q parses to %q, %v", key, again, err)
		}
	})
}

func FuzzBindNewOrder(f *testing.F) {
	webtest.FuzzBind[NewOrder](f, `{"items":[{"product_id":"6f1b2c1e-3b4a-4c8e-9a57-0d2b1f3e4a5b","quantity":1}]}`,
		`{"items":[]}`, `{"items":[{"product_id":"x","quantity":-1}]}`, `{"items":[{"quantity":1e400}]}`)
}
