package web

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

// Page sizes of every listing.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Page is one page of a listing; NextCursor is empty on the last page.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// ParseLimit reads the limit query parameter: 1 to MaxLimit, DefaultLimit when absent.
func ParseLimit(raw string) (int, error) {
	if raw == "" {
		return DefaultLimit, nil
	}
	var n int
	if _, err := fmt.Sscan(raw, &n); err != nil || fmt.Sprint(n) != raw || n < 1 || n > MaxLimit {
		var v fault.Validation
		v.Add("limit", fmt.Sprintf("must be a whole number from 1 to %d", MaxLimit))
		return 0, v.Err()
	}
	return n, nil
}

// EncodeCursor turns a position into the opaque string clients pass back.
func EncodeCursor(position any) string {
	b, _ := json.Marshal(position)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor made by EncodeCursor into position; valid reports whether the
// decoded position is usable.
func DecodeCursor(s string, position any, valid func() bool) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, position)
	}
	if err != nil || !valid() {
		var v fault.Validation
		v.Add("cursor", "is not one this service returned; pass next_cursor from the previous page")
		return v.Err()
	}
	return nil
}

// PageOf builds a page from up to limit+1 items, using the extra one to know that another
// page follows; cursor gives the position of an item.
func PageOf[T any](items []T, limit int, cursor func(T) any) Page[T] {
	page := Page[T]{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		page.NextCursor = EncodeCursor(cursor(page.Items[limit-1]))
	}
	if page.Items == nil {
		page.Items = []T{}
	}
	return page
}

// PageRequest reads the limit and cursor query parameters of a listing; valid reports whether a
// decoded cursor is usable. after is nil on the first page.
func PageRequest[C any](c interface{ QueryParam(string) string }, valid func(C) bool) (limit int, after *C, err error) {
	limit, err = ParseLimit(c.QueryParam("limit"))
	if err != nil {
		return 0, nil, err
	}
	if raw := c.QueryParam("cursor"); raw != "" {
		var cur C
		if err := DecodeCursor(raw, &cur, func() bool { return valid(cur) }); err != nil {
			return 0, nil, err
		}
		after = &cur
	}
	return limit, after, nil
}
