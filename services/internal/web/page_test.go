package web

import (
	"errors"
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

func TestParseLimit(t *testing.T) {
	for raw, want := range map[string]int{"": DefaultLimit, "1": 1, "100": 100} {
		if got, err := ParseLimit(raw); err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %d, %v; want %d", raw, got, err, want)
		}
	}
	for _, raw := range []string{"0", "101", "-1", "ten", "5 ", "1e2", "05"} {
		if _, err := ParseLimit(raw); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("ParseLimit(%q) = %v, want invalid", raw, err)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	type pos struct {
		N string `json:"n"`
	}
	s := EncodeCursor(pos{"mug"})
	var got pos
	if err := DecodeCursor(s, &got, func() bool { return got.N != "" }); err != nil || got.N != "mug" {
		t.Errorf("DecodeCursor = %+v, %v", got, err)
	}
	for _, bad := range []string{"!!", EncodeCursor(pos{})} {
		var p pos
		if err := DecodeCursor(bad, &p, func() bool { return p.N != "" }); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("DecodeCursor(%q) = %v, want invalid", bad, err)
		}
	}
	page := PageOf([]int{1, 2, 3}, 2, func(i int) any { return pos{N: "x"} })
	if len(page.Items) != 2 || page.NextCursor == "" {
		t.Errorf("PageOf(3 items, limit 2) = %+v", page)
	}
	if last := PageOf([]int(nil), 2, func(int) any { return nil }); last.Items == nil || last.NextCursor != "" {
		t.Errorf("empty page = %+v; want [] and no cursor", last)
	}
}
