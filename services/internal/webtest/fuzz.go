package webtest

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/web"
)

// FuzzBind fuzzes binding a JSON request body into a new T the way a handler does (web.Bind:
// strict decoding, then the type's validation): whatever the body, binding must not panic and
// must end in a client error — 400 malformed, 413 too large, 422 invalid — never a 5xx.
func FuzzBind[T any](f *testing.F, seeds ...string) {
	for _, s := range append(seeds, "", "{", "null", "[]", `{"a":1}`, `{}`, "\x00", `"text"`) {
		f.Add([]byte(s))
	}
	srv := web.New(web.Config{BodyLimitBytes: 1 << 20, RequestTimeout: time.Second, ShutdownTimeout: time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		c := srv.Echo.NewContext(req, httptest.NewRecorder())
		var v T
		err := web.Bind(c, &v)
		if err == nil {
			return
		}
		switch status := web.StatusOf(err); status {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("body %q: %v answers %d, want 400, 413 or 422", body, err, status)
		}
	})
}
