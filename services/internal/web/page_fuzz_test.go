package web_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/web"
)

type position struct {
	T time.Time `json:"t"`
	I uuid.UUID `json:"i"`
}

// FuzzDecodeCursor: any cursor string either decodes to a usable position that encodes back to
// the same position, or is a 422 naming the cursor; never a panic.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(web.EncodeCursor(position{T: time.Unix(1_700_000_000, 0).UTC(), I: uuid.MustParse("6f1b2c1e-3b4a-4c8e-9a57-0d2b1f3e4a5b")}))
	for _, s := range []string{"", "e30", "bnVsbA", "!!!", "eyJ0IjoiMjAyNi0xMS0yMlQxMDowMDowMFoifQ", "W10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var p position
		err := web.DecodeCursor(s, &p, func() bool { return !p.T.IsZero() && p.I != uuid.Nil })
		if err != nil {
			if web.StatusOf(err) != 422 {
				t.Fatalf("cursor %q: %v, want a 422", s, err)
			}
			return
		}
		var again position
		if err := web.DecodeCursor(web.EncodeCursor(p), &again, func() bool { return true }); err != nil || !again.T.Equal(p.T) || again.I != p.I {
			t.Fatalf("cursor %q decoded to %+v, which does not survive a round trip (%+v, %v)", s, p, again, err)
		}
	})
}
