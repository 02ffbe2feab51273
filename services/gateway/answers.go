package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// errorAnswer is how the engines that answer outside echo answer err, as the net/http
// engine's error handler does: the status, the problem's detail, and for a 401 the
// WWW-Authenticate challenge (RFC 6750 §3).
func errorAnswer(err error) (status int, detail, challenge string) {
	status = web.StatusOf(err)
	detail = err.Error()
	var he *echo.HTTPError
	var fe *fault.Error
	switch {
	case errors.As(err, &he):
		detail = fmt.Sprint(he.Message)
	case errors.As(err, &fe):
		detail = fe.Message
	}
	if status == http.StatusUnauthorized {
		challenge = fmt.Sprintf(`Bearer realm="shopmesh", error="invalid_token", error_description=%q`, detail)
	}
	return status, detail, challenge
}

// realClientIP is remote, or, when remote is one of the trusted proxies, the last address of
// X-Forwarded-For that is not: each trusted proxy appended the address it saw, and anything
// before the first untrusted hop is the client's to invent.
func realClientIP(remote netip.Addr, xff []byte, trusted []netip.Prefix) netip.Addr {
	if !isTrusted(remote, trusted) {
		return remote
	}
	for len(xff) > 0 {
		part := xff
		if i := bytes.LastIndexByte(xff, ','); i >= 0 {
			part, xff = xff[i+1:], xff[:i]
		} else {
			xff = nil
		}
		a, err := netip.ParseAddr(string(bytes.TrimSpace(part)))
		if err != nil {
			break
		}
		if !isTrusted(a, trusted) {
			return a.Unmap()
		}
	}
	return remote
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
